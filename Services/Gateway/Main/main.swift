import HeraldGateway
import HeraldServerKit

await ServiceMain.run(GatewayDefinition.self)
