import HeraldRateLimit
import HeraldServerKit

await ServiceMain.run(RateLimitDefinition.self)
