import Foundation
import HeraldPostgres
import PostgresNIO

/// An issue has a repair that is not settled yet (proposed, waiting for review, or approved).
struct RepairInFlight: Error {
  var existing: UUID?
}

extension VerificationStore {
  /// The finding last seen for `fingerprint` and whether the issue is open; nil when no issue has it.
  func issue(_ fingerprint: String) async throws -> (finding: Finding, open: Bool)? {
    guard
      let row = try await client.query(
        "SELECT body::text, open FROM verification.issues WHERE fingerprint = \(fingerprint)", logger: logger
      ).collect().first
    else { return nil }
    let (body, open) = try row.decode((String, Bool).self)
    return (try Self.decode(Finding.self, body), open)
  }

  /// Stores a proposed repair and its audit entry; throws `RepairInFlight` when the issue has an
  /// unsettled one already (the partial unique index decides, so two replicas cannot both add one).
  func insertRepair(fingerprint: String, status: String, plan: RepairPlan, by actor: String) async throws -> UUID {
    let planText = try Self.json(plan)
    let logger = self.logger
    do {
      return try await client.withTransaction(logger: logger) { connection in
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
    } catch  where error.sqlState == "23505" {
      let existing = try await client.query(
        "SELECT id FROM verification.repairs WHERE fingerprint = \(fingerprint) AND status IN ('proposed', 'pending_review', 'approved')",
        logger: logger
      ).decode(UUID.self).elements().first
      throw RepairInFlight(existing: existing)
    }
  }

  /// Records a review (`approved` or `rejected`) and its audit entry.
  func recordReview(_ id: UUID, action: String, reviewer: String, note: String) async throws {
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
  }

  /// Records a run of a repair (`dry_run`, `applied` or `rolled_back`) in the audit; a run for
  /// real also settles the repair's status.
  func recordRun(_ id: UUID, action: String, settles: Bool, by actor: String, run: RepairRecord.Run) async throws {
    let detail = try Self.json(run)
    let logger = self.logger
    try await client.withTransaction(logger: logger) { connection in
      if settles {
        try await connection.query("UPDATE verification.repairs SET status = \(action) WHERE id = \(id)", logger: logger)
      }
      try await connection.query(
        "INSERT INTO verification.repair_audit (repair_id, action, actor, detail) VALUES (\(id), \(action), \(actor), \(detail)::jsonb)",
        logger: logger)
    }
  }

  /// The repair with `id`, with its runs; nil when there is none.
  func repair(_ id: UUID) async throws -> RepairRecord? {
    try await repairs(where: id, pendingOnly: false).first
  }

  /// The newest 200 repairs (only those waiting for review if `pendingOnly`), with their runs.
  func repairs(pendingOnly: Bool) async throws -> [RepairRecord] {
    try await repairs(where: nil, pendingOnly: pendingOnly)
  }

  private func repairs(where id: UUID?, pendingOnly: Bool) async throws -> [RepairRecord] {
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
          id: id, fingerprint: fingerprint, finding: try Self.decode(Finding.self, body), plan: try Self.decode(RepairPlan.self, plan),
          status: status, needsReview: needsReview, createdAt: created, requestedBy: requestedBy, reviewedBy: reviewedBy,
          reviewedAt: reviewedAt, reviewNote: note))
    }
    var runs: [UUID: [RepairRecord.Run]] = [:]
    for try await (repair, detail) in try await client.query(
      """
      SELECT repair_id, detail::text FROM verification.repair_audit
      WHERE repair_id = ANY(\(records.map(\.id))::uuid[]) AND action IN ('dry_run', 'applied', 'rolled_back') ORDER BY id
      """, logger: logger
    ).decode((UUID, String).self) {
      if let run = try? Self.decode(RepairRecord.Run.self, detail) { runs[repair, default: []].append(run) }
    }
    for index in records.indices { records[index].runs = runs[records[index].id] ?? [] }
    return records
  }
}
