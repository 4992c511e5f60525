import Foundation
import HeraldCore
import HeraldDelivery
import HeraldServerKit

let settings: DeliverySettings
do {
  settings = try DeliverySettings.load(Settings())
  // A bad providers file stops start-up here, naming the file and the field.
  if let path = settings.providersFile { _ = try ProviderConfig.loadFile(path) }
} catch {
  FileHandle.standardError.write(Data("herald delivery: \(error)\n".utf8))
  exit(1)
}
await ServiceMain.run(DeliveryDefinition.make(settings: settings))
