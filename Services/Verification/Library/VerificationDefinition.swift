import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The verification process (SPEC §6): migration-ledger checks; drift, integrity, repairs follow.
package enum VerificationDefinition {
  package static let definition = ServiceDefinition(
    name: "verification",
    grpcServices: [Herald_Verification_V1_VerificationService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.verification
  ) { resources in
    [VerificationService(checker: LedgerChecker(client: resources.database, logger: resources.logger))]
  }
}
