import Foundation
import HeraldCore
import HeraldServerKit
import HeraldVerification

let settings: VerificationSettings
do {
  settings = try VerificationSettings.load(Settings())
} catch {
  FileHandle.standardError.write(Data("herald verification: \(error)\n".utf8))
  exit(1)
}
await ServiceMain.run(VerificationDefinition.make(settings: settings))
