import HeraldServerKit
import HeraldVerification

await ServiceMain.run(VerificationDefinition.self)
