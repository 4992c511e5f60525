import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO

/// SPEC §6 repairs: a plan per auto-repairable issue, dry-run by default; a run for real copies
/// the affected rows to the backup schema first, runs under lock and statement timeouts, re-runs
/// the check and rolls everything back if the issue is still there. Destructive or ambiguous
/// plans wait in the review queue. Every step is audited.
package struct RepairDesk: Sendable {
  let store: VerificationStore
  /// A role that may write the service schemas; nil: repairs are refused.
  let repairClient: PostgresClient?
  let verifier: Verifier
  let logger: Logger

  package init(store: VerificationStore, repairClient: PostgresClient?, verifier: Verifier, logger: Logger) {
    self.store = store
    self.repairClient = repairClient
    self.verifier = verifier
    self.logger = logger
  }

  static let backupSchema = "verification_backup"

  package func propose(fingerprint: String, by actor: String) async throws -> RepairRecord {
    guard let (finding, open) = try await store.issue(fingerprint) else {
      throw RPCError.field("fingerprint", .notFound, "no issue has fingerprint \(fingerprint)")
    }
    guard open else { throw RPCError(code: .failedPrecondition, message: "issue \(fingerprint) is resolved: nothing to repair") }
    guard let plan = finding.repair else {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(finding.check) on \(finding.affectedObject) has no repair Herald can run; suggested: \(finding.suggestedRepair)")
    }
    let status = plan.needsReview ? "pending_review" : "proposed"
    let id: UUID
    do {
      id = try await store.insertRepair(fingerprint: fingerprint, status: status, plan: plan, by: actor)
    } catch let inFlight as RepairInFlight {
      throw RPCError(
        code: .alreadyExists,
        message: "issue \(fingerprint) has a repair in flight already (\(inFlight.existing?.lowercasedString ?? "?"))")
    }
    Self.count(status)
    return try await stored(id)
  }

  package func review(_ id: UUID, approve: Bool, reviewer: String, note: String) async throws -> RepairRecord {
    guard let repair = try await store.repair(id) else { throw RPCError.field("id", .notFound, "no repair has id \(id.lowercasedString)") }
    guard repair.status == "pending_review" else {
      throw RPCError(code: .failedPrecondition, message: "repair \(id.lowercasedString) is \(repair.status), not waiting for review")
    }
    guard !reviewer.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
      throw RPCError.field("reviewer", .invalidArgument, "reviewer is required: who approves or rejects the plan")
    }
    let action = approve ? "approved" : "rejected"
    try await store.recordReview(id, action: action, reviewer: reviewer, note: note)
    Self.count(action)
    return try await stored(id)
  }

  /// Runs a plan: `apply` false is a dry run (everything rolled back, the re-check's answer
  /// reported); true commits only when the re-check no longer finds the issue.
  package func run(_ id: UUID, apply: Bool, by actor: String) async throws -> RepairRecord {
    guard let repair = try await store.repair(id) else { throw RPCError.field("id", .notFound, "no repair has id \(id.lowercasedString)") }
    switch repair.status {
    case "rejected", "applied", "rolled_back":
      throw RPCError(code: .failedPrecondition, message: "repair \(id.lowercasedString) is \(repair.status); propose a new one")
    case "pending_review" where apply:
      throw RPCError(
        code: .failedPrecondition, message: "repair \(id.lowercasedString) is destructive or ambiguous and waits for review (ReviewRepair)")
    default: break
    }
    guard let repairClient else {
      throw RPCError(
        code: .failedPrecondition,
        message:
          "repairs need HERALD_VERIFICATION_REPAIR_DATABASE_URL: a role that may write the service schemas (checks use a read-only one)")
    }
    // The check's expected catalog is made before the repair locks anything.
    let parts = repair.finding.component.split(separator: ":").map(String.init)
    if parts.first == "schema", parts.count == 2, let set = HeraldMigrations.set(forSchema: parts[1]) {
      _ = try await verifier.expectedCatalog(set)
    }
    var run = RepairRecord.Run(
      dryRun: !apply, at: Date(), by: actor, rows: [], backupTable: "", backedUpRows: 0, issueRemains: false, error: "", committed: false)
    let plan = repair.plan
    let logger = self.logger
    let settings = verifier.settings
    try await repairClient.withConnection { connection in
      try await connection.query("BEGIN", logger: logger)
      do {
        // One run of a repair at a time (a second is refused, not queued).
        let claimed =
          try await connection.query(AdvisoryKey(id).tryTransactionLock, logger: logger)
          .collect().first?.decode(Bool.self) ?? false
        guard claimed else { throw RPCError(code: .failedPrecondition, message: "repair \(id.lowercasedString) is running already") }
        // Checked again now that it is claimed: a concurrent run may have settled it.
        let status = try await connection.query("SELECT status FROM verification.repairs WHERE id = \(id)", logger: logger)
          .collect().first?.decode(String.self)
        guard status == repair.status else {
          throw RPCError(code: .failedPrecondition, message: "repair \(id.lowercasedString) became \(status ?? "gone") meanwhile")
        }
        try await Verifier.limit(
          lock: settings.repairLockTimeout, statement: settings.repairStatementTimeout, on: connection, logger: logger)
        // The checkpoint: the rows the repair changes, as they are now.
        if let backup = plan.backupQuery {
          let table = "\(Self.backupSchema).repair_\(id.uuidString.prefix(8).lowercased())_\(Int(Date().timeIntervalSince1970))"
          try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(Self.backupSchema)"), logger: logger)
          let created = try await connection.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) AS \(backup)"), logger: logger).get()
          run.backupTable = table
          run.backedUpRows = created.metadata.rows ?? 0
          // What goes with them (cascaded rows), next to it: <table>_2, _3...
          for (index, query) in plan.alsoBackUp.enumerated() {
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table)_\(index + 2) AS \(query)"), logger: logger)
          }
        }
        for statement in plan.statements {
          let result = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).get()
          run.rows.append(result.metadata.rows ?? 0)
        }
        run.issueRemains = try await self.stillThere(repair.finding, connection: connection)
        if apply && !run.issueRemains {
          try await connection.query("COMMIT", logger: logger)
          run.committed = true
        } else {
          if apply { run.error = "the check still finds the issue after the repair: everything was rolled back" }
          try await connection.query("ROLLBACK", logger: logger)
        }
      } catch let error as RPCError {
        _ = try? await connection.query("ROLLBACK", logger: logger)
        throw error
      } catch {
        run.error = error.databaseMessage
        _ = try? await connection.query("ROLLBACK", logger: logger)
      }
    }
    // A backup made in a transaction that was rolled back is gone with it.
    if !run.committed { run.backupTable = "" }
    let action = !apply ? "dry_run" : (run.committed ? "applied" : "rolled_back")
    try await store.recordRun(id, action: action, settles: apply, by: actor, run: run)
    Self.count(action)
    if run.committed {
      // The issue's component is checked again so the report and the issue list show the repair.
      let component = repair.finding.component.split(separator: ":").first.map(String.init) ?? "data"
      let schemas = repair.finding.component.contains(":") ? [String(repair.finding.component.split(separator: ":")[1])] : []
      _ = try? await verifier.run(component: component, schemas: schemas)
    }
    return try await stored(id)
  }

  /// Whether the check that found `finding` still finds it, seen from inside the repair's
  /// transaction.
  func stillThere(_ finding: Finding, connection: PostgresConnection) async throws -> Bool {
    let parts = finding.component.split(separator: ":").map(String.init)
    switch parts.first {
    case "schema":
      guard parts.count == 2, let set = HeraldMigrations.set(forSchema: parts[1]) else { return true }
      let live = try await CatalogSnapshot.read(schema: set.schema, connection: connection, logger: logger)
      let expected = try await verifier.expectedCatalog(set)
      return DriftCheck.compare(schema: set.schema, live: live, expected: expected).contains { $0.fingerprint == finding.fingerprint }
    case "data", "sync":
      guard let check = DataChecks.all(stuckAfter: verifier.settings.stuckAfter).first(where: { $0.check == finding.check })
      else { return true }
      return try await check.run(connection: connection, logger: logger).contains { $0.fingerprint == finding.fingerprint }
    default:
      return true
    }
  }

  /// The repair just written; gone only if its issue was deleted meanwhile, which the answer says.
  private func stored(_ id: UUID) async throws -> RepairRecord {
    guard let repair = try await store.repair(id) else {
      throw RPCError(
        code: .aborted, message: "repair \(id.lowercasedString) was removed while it was being answered; list the repairs again")
    }
    return repair
  }

  /// Counts a repair reaching `status` (`herald_verification_repairs_total{status}`): proposed,
  /// pending_review, approved, rejected, dry_run, applied or rolled_back.
  static func count(_ status: String) {
    Counter(label: "herald_verification_repairs_total", dimensions: [("status", status)]).increment()
  }
}
