import Foundation
import HeraldMigrations
import HeraldPostgres
import Logging
import PostgresNIO

/// One schema's ledger compared with the migrations this build knows.
package struct SchemaLedgerReport: Sendable, Equatable, Codable {
  package enum State: String, Sendable, Codable { case current, pending, diverged, missing }
  package struct Finding: Sendable, Equatable, Codable {
    package var version: Int
    package var name: String
    /// checksum_changed, unknown_applied, gap, pending
    package var kind: String
    package var expectedChecksum: String?
    package var recordedChecksum: String?
  }

  package var schema: String
  package var state: State
  package var applied: Int
  package var known: Int
  package var findings: [Finding]

  package init(schema: String, ledger: [AppliedMigration]?, known: MigrationSet) {
    self.schema = schema
    self.known = known.migrations.count
    guard let ledger else {
      self.state = .missing
      self.applied = 0
      self.findings = []
      return
    }
    self.applied = ledger.count
    let comparison = LedgerComparison(applied: ledger, known: known)
    var findings: [Finding] = comparison.changed.map {
      Finding(version: $0.version, name: $0.name, kind: "checksum_changed", expectedChecksum: $0.expected, recordedChecksum: $0.recorded)
    }
    findings += comparison.unknown.map {
      Finding(version: $0.version, name: $0.name, kind: "unknown_applied", expectedChecksum: nil, recordedChecksum: $0.checksum)
    }
    findings += comparison.gaps.map {
      Finding(version: $0.version, name: $0.name, kind: "gap", expectedChecksum: $0.checksum, recordedChecksum: nil)
    }
    findings += comparison.pending.map {
      Finding(version: $0.version, name: $0.name, kind: "pending", expectedChecksum: $0.checksum, recordedChecksum: nil)
    }
    self.findings = findings
    self.state = comparison.isDiverged ? .diverged : (comparison.pending.isEmpty ? .current : .pending)
  }
}

/// Reads every service schema's migration ledger (read-only) and records the result as a report.
package struct LedgerChecker: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  package func check(schemas: [String]) async throws -> [SchemaLedgerReport] {
    let started = Date()
    let sets =
      try schemas.isEmpty
      ? HeraldMigrations.all
      : schemas.map { schema in
        guard let set = HeraldMigrations.set(forSchema: schema) else { throw UnknownSchema(schema: schema) }
        return set
      }
    var reports: [SchemaLedgerReport] = []
    try await client.withConnection { connection in
      // Read-only, short timeouts: verification must never block the services it checks.
      try await connection.query("SET statement_timeout = '5s'", logger: logger)
      try await connection.query("SET lock_timeout = '1s'", logger: logger)
      for set in sets {
        let ledger = try await MigrationRunner.ledger(schema: set.schema, connection: connection, logger: logger)
        reports.append(SchemaLedgerReport(schema: set.schema, ledger: ledger, known: set))
      }
    }
    try await VerificationStore(client: client, logger: logger).saveLedgerCheck(reports, started: started)
    return reports
  }
}

package struct UnknownSchema: Error, Equatable {
  package var schema: String
}
