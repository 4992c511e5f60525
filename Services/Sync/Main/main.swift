import HeraldServerKit
import HeraldSync

await ServiceMain.run(SyncDefinition.self)
