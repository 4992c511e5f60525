import HeraldSync
import HeraldServerKit

await ServiceMain.run(SyncDefinition.self)
