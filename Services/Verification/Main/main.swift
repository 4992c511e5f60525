import HeraldVerification
import HeraldServerKit

await ServiceMain.run(VerificationDefinition.self)
