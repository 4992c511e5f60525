import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Conflicts (`sync.conflicts`): those a run finds, the fields waiting for review that runs leave
/// alone, and what ListConflicts and ResolveConflict read and settle.
extension SyncStore {
  static let conflictColumns = """
    id, job_id, run_id, record_id, subscriber_id, subscriber_field, base_value::text, local_value::text, remote_value::text,
    policy, resolution, created_at, resolved_at
    """

  static func conflict(_ row: PostgresRow) throws -> SyncConflict {
    let (id, job, run, record, subscriber, field, base, local, remote, policy, resolution, created, resolved) = try row.decode(
      (UUID, UUID, UUID, String, UUID, String, String?, String?, String?, String, String, Date, Date?).self)
    return SyncConflict(
      id: id, jobID: job, runID: run, recordID: record, subscriberID: subscriber, subscriberField: field, baseJSON: base,
      localJSON: local, remoteJSON: remote, policy: ConflictPolicy(rawValue: policy), resolution: resolution, createdAt: created,
      resolvedAt: resolved)
  }

  /// Stores what a run found; an open conflict seen again is brought up to date rather than
  /// recorded twice.
  func saveConflicts(_ conflicts: [FoundConflict], job: UUID, run: UUID, on connection: PostgresConnection) async throws {
    for conflict in conflicts {
      let pending = conflict.resolution == "pending"
      try await connection.query(
        """
        INSERT INTO sync.conflicts (job_id, run_id, record_id, subscriber_id, subscriber_field, base_value, local_value,
          remote_value, policy, resolution, resolved_at)
        VALUES (\(job), \(run), \(conflict.recordID), \(conflict.subscriberID), \(conflict.field), \(Self.jsonText(conflict.base))::jsonb,
          \(Self.jsonText(conflict.local))::jsonb, \(Self.jsonText(conflict.remote))::jsonb, \(conflict.policy.rawValue), \(conflict.resolution),
          CASE WHEN \(pending) THEN NULL ELSE now() END)
        ON CONFLICT (job_id, record_id, subscriber_field) WHERE resolution = 'pending' DO UPDATE SET
          run_id = excluded.run_id, local_value = excluded.local_value, remote_value = excluded.remote_value
        """, logger: logger)
    }
  }

  /// Fields of these records with a conflict waiting for review, as `record/field`.
  func pendingFields(of job: UUID, records: [String], on connection: PostgresConnection) async throws -> Set<String> {
    var result = Set<String>()
    let rows = try await connection.query(
      """
      SELECT record_id, subscriber_field FROM sync.conflicts
      WHERE job_id = \(job) AND resolution = 'pending' AND record_id = ANY(\(records)::text[])
      """, logger: logger)
    for try await (record, field) in rows.decode((String, String).self) { result.insert("\(record)/\(field)") }
    return result
  }

  /// The job's conflicts (only those waiting for review when `pendingOnly`), newest first.
  package func conflicts(of job: UUID, pendingOnly: Bool, limit: Int) async throws -> [SyncConflict] {
    try await client.query(
      """
      SELECT \(unescaped: Self.conflictColumns) FROM sync.conflicts
      WHERE job_id = \(job) AND (NOT \(pendingOnly) OR resolution = 'pending')
      ORDER BY created_at DESC, id LIMIT \(limit)
      """, logger: logger
    ).collect().map(Self.conflict)
  }

  package func conflict(_ id: UUID) async throws -> SyncConflict? {
    try await client.query("SELECT \(unescaped: Self.conflictColumns) FROM sync.conflicts WHERE id = \(id)", logger: logger)
      .collect().first.map(Self.conflict)
  }

  /// Settles a pending conflict in one transaction, on the connection holding its job's lock:
  /// the record's snapshot takes both sides' value of the field as they now are, and the conflict
  /// the side taken (`local` or `remote`). The settled conflict; nil when it was settled meanwhile
  /// (nothing changes).
  func settle(
    _ conflict: SyncConflict, take: String, remote: JSONValue, local: JSONValue, on connection: PostgresConnection
  ) async throws -> SyncConflict? {
    let logger = self.logger
    let field = conflict.subscriberField
    do {
      return try await connection.withTransaction(logger: logger) { connection in
        try await connection.query(
          """
          UPDATE sync.records SET remote_values = remote_values || jsonb_build_object(\(field)::text, \(Self.json(remote))::jsonb),
            local_values = local_values || jsonb_build_object(\(field)::text, \(Self.json(local))::jsonb), synced_at = now()
          WHERE job_id = \(conflict.jobID) AND record_id = \(conflict.recordID)
          """, logger: logger)
        let settled = try await connection.query(
          """
          UPDATE sync.conflicts SET resolution = \(take), resolved_at = now()
          WHERE id = \(conflict.id) AND resolution = 'pending' RETURNING \(unescaped: Self.conflictColumns)
          """, logger: logger
        ).collect().first
        // Rolled back: the snapshot stays as the settlement that won left it.
        guard let settled else { throw SettledMeanwhile() }
        return try Self.conflict(settled)
      }
    } catch let error as PostgresTransactionError where error.closureError is SettledMeanwhile {
      return nil
    }
  }
}

/// The conflict was settled by someone else between its read and its settlement.
private struct SettledMeanwhile: Error {}
