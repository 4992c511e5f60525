import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A repair as stored: the plan of one issue, its review, and its runs (from the audit).
package struct RepairRecord: Sendable {
  package struct Run: Sendable, Codable {
    package var dryRun: Bool
    package var at: Date
    package var by: String
    package var rows: [Int]
    package var backupTable: String
    package var backedUpRows: Int
    package var issueRemains: Bool
    package var error: String
    package var committed: Bool
  }

  package var id: UUID
  package var fingerprint: String
  package var finding: Finding
  package var plan: RepairPlan
  package var status: String
  package var needsReview: Bool
  package var createdAt: Date
  package var requestedBy: String
  package var reviewedBy: String?
  package var reviewedAt: Date?
  package var reviewNote: String
  package var runs: [Run] = []
}

/// SPEC §6 repairs: a plan per auto-repairable issue, dry-run by default; a run for real copies
/// the affected rows to the backup schema first, runs under lock and statement timeouts, re-runs
/// the check and rolls everything back if the issue is still there. Destructive or ambiguous
/// plans wait in the review queue. Every step is audited.
package struct RepairDesk: Sendable {
  let client: PostgresClient
  /// A role that may write the service schemas; nil: repairs are refused.
  let repairClient: PostgresClient?
  let verifier: Verifier
  let logger: Logger

  package init(client: PostgresClient, repairClient: PostgresClient?, verifier: Verifier, logger: Logger) {
    self.client = client
    self.repairClient = repairClient
    self.verifier = verifier
    self.logger = logger
  }

  static let backupSchema = "verification_backup"

  package func propose(fingerprint: String, by actor: String) async throws -> RepairRecord {
    guard let row = try await client.query(
      "SELECT body::text, open FROM verification.issues WHERE fingerprint = \(fingerprint)", logger: logger
    ).collect().first else {
      throw RPCError.field("fingerprint", .notFound, "no issue has fingerprint \(fingerprint)")
    }
    let (body, open) = try row.decode((String, Bool).self)
    let finding = try IssueStore.decoder.decode(Finding.self, from: Data(body.utf8))
    guard open else { throw RPCError(code: .failedPrecondition, message: "issue \(fingerprint) is resolved: nothing to repair") }
    guard let plan = finding.repair else {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(finding.check) on \(finding.affectedObject) has no repair Herald can run; suggested: \(finding.suggestedRepair)")
    }
    let status = plan.needsReview ? "pending_review" : "proposed"
    let planText = String(decoding: try IssueStore.encoder.encode(plan), as: UTF8.self)
    let logger = self.logger
    do {
      let id: UUID = try await client.withTransaction(logger: logger) { connection in
        let row = try await connection.query(
          """
          INSERT INTO verification.repairs (fingerprint, status, needs_review, plan, requested_by)
          VALUES (\(fingerprint), \(status), \(plan.needsReview), \(planText)::jsonb, \(actor)) RETURNING id
          """, logger: logger
        ).collect().first
        guard let id = try row?.decode(UUID.self) else { throw PostgresError.protocol("INSERT RETURNING gave no row") }
        try await connection.query(
          "INSERT INTO verification.repair_audit (repair_id, action, actor) VALUES (\(id), 'proposed', \(actor))", logger: logger)
        return id
      }
      return try await get(id)!
    } catch where error.sqlState == "23505" {
      let existing = try await client.query(
        "SELECT id FROM verification.repairs WHERE fingerprint = \(fingerprint) AND status IN ('proposed', 'pending_review', 'approved')",
        logger: logger
      ).decode(UUID.self).elements().first
      throw RPCError(
        code: .alreadyExists, message: "issue \(fingerprint) has a repair in flight already (\(existing?.lowercasedString ?? "?"))")
    }
  }

  package func review(_ id: UUID, approve: Bool, reviewer: String, note: String) async throws -> RepairRecord {
    guard let repair = try await get(id) else { throw RPCError.field("id", .notFound, "no repair has id \(id.lowercasedString)") }
    guard repair.status == "pending_review" else {
      throw RPCError(code: .failedPrecondition, message: "repair \(id.lowercasedString) is \(repair.status), not waiting for review")
    }
    guard !reviewer.trimmingCharacters(in: .whitespaces).isEmpty else {
      throw RPCError.field("reviewer", .invalidArgument, "reviewer is required: who approves or rejects the plan")
    }
    let action = approve ? "approved" : "rejected"
    let logger = self.logger
    try await client.withTransaction(logger: logger) { connection in
      try await connection.query(
        """
        UPDATE verification.repairs SET status = \(action), reviewed_by = \(reviewer), reviewed_at = now(), review_note = \(note)
        WHERE id = \(id)
        """, logger: logger)
      try await connection.query(
        """
        INSERT INTO verification.repair_audit (repair_id, action, actor, detail)
        VALUES (\(id), \(action), \(reviewer), jsonb_build_object('note', \(note)::text))
        """, logger: logger)
    }
    return try await get(id)!
  }

  /// Runs a plan: `apply` false is a dry run (everything rolled back, the re-check's answer
  /// reported); true commits only when the re-check no longer finds the issue.
  package func run(_ id: UUID, apply: Bool, by actor: String) async throws -> RepairRecord {
    guard let repair = try await get(id) else { throw RPCError.field("id", .notFound, "no repair has id \(id.lowercasedString)") }
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
        message: "repairs need HERALD_VERIFICATION_REPAIR_DATABASE_URL: a role that may write the service schemas (checks use a read-only one)")
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
        let claimed = try await connection.query(AdvisoryKey(id).tryTransactionLock, logger: logger)
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
    let detail = String(decoding: try IssueStore.encoder.encode(run), as: UTF8.self)
    try await client.withTransaction(logger: logger) { connection in
      if apply {
        try await connection.query("UPDATE verification.repairs SET status = \(action) WHERE id = \(id)", logger: logger)
      }
      try await connection.query(
        "INSERT INTO verification.repair_audit (repair_id, action, actor, detail) VALUES (\(id), \(action), \(actor), \(detail)::jsonb)",
        logger: logger)
    }
    if run.committed {
      // The issue's component is checked again so the report and the issue list show the repair.
      let component = repair.finding.component.split(separator: ":").first.map(String.init) ?? "data"
      let schemas = repair.finding.component.contains(":") ? [String(repair.finding.component.split(separator: ":")[1])] : []
      _ = try? await verifier.run(component: component, schemas: schemas)
    }
    return try await get(id)!
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

  package func get(_ id: UUID) async throws -> RepairRecord? {
    try await list(where: id, pendingOnly: false).first
  }

  package func list(pendingOnly: Bool) async throws -> [RepairRecord] {
    try await list(where: nil, pendingOnly: pendingOnly)
  }

  private func list(where id: UUID?, pendingOnly: Bool) async throws -> [RepairRecord] {
    var records: [RepairRecord] = []
    let rows = try await client.query(
      """
      SELECT r.id, r.fingerprint, i.body::text, r.plan::text, r.status, r.needs_review, r.created_at, r.requested_by, r.reviewed_by,
        r.reviewed_at, r.review_note
      FROM verification.repairs r JOIN verification.issues i USING (fingerprint)
      WHERE (\(id)::uuid IS NULL OR r.id = \(id)) AND (NOT \(pendingOnly) OR r.status = 'pending_review')
      ORDER BY r.created_at DESC, r.id LIMIT 200
      """, logger: logger)
    for try await (id, fingerprint, body, plan, status, needsReview, created, requestedBy, reviewedBy, reviewedAt, note) in rows.decode(
      (UUID, String, String, String, String, Bool, Date, String, String?, Date?, String).self)
    {
      records.append(
        RepairRecord(
          id: id, fingerprint: fingerprint, finding: try IssueStore.decoder.decode(Finding.self, from: Data(body.utf8)),
          plan: try IssueStore.decoder.decode(RepairPlan.self, from: Data(plan.utf8)), status: status, needsReview: needsReview,
          createdAt: created, requestedBy: requestedBy, reviewedBy: reviewedBy, reviewedAt: reviewedAt, reviewNote: note))
    }
    var runs: [UUID: [RepairRecord.Run]] = [:]
    for try await (repair, detail) in try await client.query(
      """
      SELECT repair_id, detail::text FROM verification.repair_audit
      WHERE repair_id = ANY(\(records.map(\.id))::uuid[]) AND action IN ('dry_run', 'applied', 'rolled_back') ORDER BY id
      """, logger: logger
    ).decode((UUID, String).self) {
      if let run = try? IssueStore.decoder.decode(RepairRecord.Run.self, from: Data(detail.utf8)) { runs[repair, default: []].append(run) }
    }
    for index in records.indices { records[index].runs = runs[records[index].id] ?? [] }
    return records
  }
}
