import HeraldDelivery
import HeraldServerKit

await ServiceMain.run(DeliveryDefinition.self)
