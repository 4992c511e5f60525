import Foundation
import HeraldCore
import HeraldServerKit
import HeraldSync

let settings: SyncSettings
do {
  settings = try SyncSettings.load(Settings())
} catch {
  FileHandle.standardError.write(Data("herald sync: \(error)\n".utf8))
  exit(1)
}
await ServiceMain.run(SyncDefinition.make(settings: settings))
