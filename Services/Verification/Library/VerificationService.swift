import GRPCCore
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit

/// `herald.verification.v1.VerificationService`.
package struct VerificationService: Herald_Verification_V1_VerificationService.SimpleServiceProtocol {
  let checker: LedgerChecker

  package init(checker: LedgerChecker) {
    self.checker = checker
  }

  package func checkMigrationLedgers(
    request: Herald_Verification_V1_CheckMigrationLedgersRequest, context: ServerContext
  ) async throws -> Herald_Verification_V1_CheckMigrationLedgersResponse {
    let reports: [SchemaLedgerReport]
    do {
      reports = try await checker.check(schemas: request.schemas)
    } catch let error as UnknownSchema {
      throw RPCError.field(
        "schemas", .invalidArgument,
        "schema '\(error.schema)' is not a Herald schema (known: \(HeraldMigrations.all.map(\.schema).joined(separator: ", ")))")
    }
    var response = Herald_Verification_V1_CheckMigrationLedgersResponse()
    response.schemas = reports.map { report in
      var message = Herald_Verification_V1_SchemaLedger()
      message.schema = report.schema
      switch report.state {
      case .current: message.state = .current
      case .pending: message.state = .pending
      case .diverged: message.state = .diverged
      case .missing: message.state = .missing
      }
      message.applied = Int32(report.applied)
      message.known = Int32(report.known)
      message.findings = report.findings.map { finding in
        var message = Herald_Verification_V1_LedgerFinding()
        message.version = Int32(finding.version)
        message.name = finding.name
        message.kind = finding.kind
        message.expectedChecksum = finding.expectedChecksum ?? ""
        message.recordedChecksum = finding.recordedChecksum ?? ""
        return message
      }
      return message
    }
    return response
  }
}
