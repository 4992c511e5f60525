import Foundation
import HeraldCore
import HeraldRateLimit
import HeraldServerKit

let settings: RateLimitSettings
do {
  settings = try RateLimitSettings.load(Settings())
  // A bad limits file stops start-up here, naming the file and the entry.
  if let path = settings.limitsFile { _ = try LimitDefinition.loadFile(path) }
} catch {
  FileHandle.standardError.write(Data("herald ratelimit: \(error)\n".utf8))
  exit(1)
}
await ServiceMain.run(RateLimitDefinition.make(settings: settings))
