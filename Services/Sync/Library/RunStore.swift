import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Counts of one run, saved with each checkpoint (so a run in progress shows them).
package struct RunCounts: Codable, Sendable, Equatable {
  package var recordsRead = 0
  package var created = 0
  package var updated = 0
  package var unchanged = 0
  package var duplicates = 0
  package var softDeleted = 0
  package var pushed = 0
  package var conflicts = 0
  package var errors = 0
  package var apiCalls = 0
  package var rateLimited = 0
  package var cursorRestarts = 0

  package init() {}
}

/// One change a dry run would have made.
package struct PlannedChange: Codable, Sendable, Equatable {
  package var recordID: String
  package var action: String
  package var subscriberID: String
  package var fields: [String]
}

package struct RecordError: Sendable, Equatable {
  package var recordID: String
  package var field: String
  package var message: String
}

package struct SyncRunRecord: Sendable {
  package enum Status: String, Sendable { case running, succeeded, failed, aborted, interrupted }
  package var id: UUID
  package var jobID: UUID
  package var status: Status
  package var phase: String
  package var dryRun: Bool
  package var full: Bool
  package var sweepID: UUID
  package var resumedFrom: UUID?
  package var startedAt: Date
  package var finishedAt: Date?
  package var cursorBefore: String
  package var checkpoint: String
  package var cursorAfter: String
  package var counts: RunCounts
  package var planned: [PlannedChange]
  package var error: String
  package var errors: [RecordError] = []
}

/// A remote record's link to its subscriber and both sides' values at the last sync.
struct RecordLink: Sendable {
  var recordID: String
  var subscriberID: UUID
  var remoteModified: String
  var remoteValues: [String: JSONValue]
  var localValues: [String: JSONValue]
  var deleted: Bool
}

/// A conflict as found by a run (before it is stored).
struct FoundConflict: Sendable {
  var recordID: String
  var subscriberID: UUID
  var field: String
  var base: JSONValue?
  var local: JSONValue
  var remote: JSONValue
  var policy: ConflictPolicy
  var resolution: String
}

/// SQL of runs, record links and conflicts (the `sync` schema).
enum RunStore {
  static let maxErrors = 1_000
  static let runColumns = """
    id, job_id, status, phase, dry_run, full_sync, sweep_id, resumed_from, started_at, finished_at, cursor_before,
    checkpoint, cursor_after, counts::text AS counts, planned::text AS planned, error
    """

  static func run(_ row: PostgresRow) throws -> SyncRunRecord {
    let cells = row.makeRandomAccess()
    let statusText = try cells["status"].decode(String.self)
    guard let status = SyncRunRecord.Status(rawValue: statusText) else {
      throw PostgresError.protocol("sync.runs has status '\(statusText)'")
    }
    let decoder = JSONDecoder()
    return SyncRunRecord(
      id: try cells["id"].decode(UUID.self), jobID: try cells["job_id"].decode(UUID.self), status: status,
      phase: try cells["phase"].decode(String.self), dryRun: try cells["dry_run"].decode(Bool.self),
      full: try cells["full_sync"].decode(Bool.self), sweepID: try cells["sweep_id"].decode(UUID.self),
      resumedFrom: try cells["resumed_from"].decode(UUID?.self), startedAt: try cells["started_at"].decode(Date.self),
      finishedAt: try cells["finished_at"].decode(Date?.self), cursorBefore: try cells["cursor_before"].decode(String.self),
      checkpoint: try cells["checkpoint"].decode(String.self), cursorAfter: try cells["cursor_after"].decode(String.self),
      counts: (try? decoder.decode(RunCounts.self, from: Data(try cells["counts"].decode(String.self).utf8))) ?? RunCounts(),
      planned: (try? decoder.decode([PlannedChange].self, from: Data(try cells["planned"].decode(String.self).utf8))) ?? [],
      error: try cells["error"].decode(String.self))
  }

  static func get(_ id: UUID, client: PostgresClient, logger: Logger) async throws -> SyncRunRecord? {
    guard var run = try await client.query("SELECT \(unescaped: runColumns) FROM sync.runs WHERE id = \(id)", logger: logger)
      .collect().first.map(Self.run)
    else { return nil }
    let rows = try await client.query(
      "SELECT record_id, field, message FROM sync.record_errors WHERE run_id = \(id) ORDER BY position", logger: logger)
    for try await (record, field, message) in rows.decode((String, String, String).self) {
      run.errors.append(RecordError(recordID: record, field: field, message: message))
    }
    return run
  }

  static func list(job: UUID, limit: Int, client: PostgresClient, logger: Logger) async throws -> [SyncRunRecord] {
    try await client.query(
      "SELECT \(unescaped: runColumns) FROM sync.runs WHERE job_id = \(job) ORDER BY started_at DESC, id LIMIT \(limit)",
      logger: logger
    ).collect().map(Self.run)
  }

  static func latest(job: UUID, connection: PostgresConnection, logger: Logger) async throws -> SyncRunRecord? {
    try await connection.query(
      "SELECT \(unescaped: runColumns) FROM sync.runs WHERE job_id = \(job) ORDER BY started_at DESC, id LIMIT 1",
      logger: logger
    ).collect().first.map(Self.run)
  }

  static func json<T: Encodable>(_ value: T) -> String {
    String(decoding: (try? JSONEncoder().encode(value)) ?? Data("{}".utf8), as: UTF8.self)
  }

  static func jsonText(_ value: JSONValue?) -> String? {
    value.map { json($0) }
  }

  /// Loads the links of these records.
  static func links(job: UUID, records: [String], connection: PostgresConnection, logger: Logger) async throws -> [String: RecordLink] {
    var links: [String: RecordLink] = [:]
    let rows = try await connection.query(
      """
      SELECT record_id, subscriber_id, remote_modified, remote_values::text, local_values::text, deleted_at IS NOT NULL
      FROM sync.records WHERE job_id = \(job) AND record_id = ANY(\(records)::text[])
      """, logger: logger)
    for try await (record, subscriber, modified, remote, local, deleted) in rows.decode((String, UUID, String, String, String, Bool).self) {
      links[record] = RecordLink(
        recordID: record, subscriberID: subscriber, remoteModified: modified,
        remoteValues: JSONValue.parse(remote)?.object ?? [:], localValues: JSONValue.parse(local)?.object ?? [:], deleted: deleted)
    }
    return links
  }

  /// Writes links (new or changed snapshots); `sweep` marks them seen by a full run.
  static func save(links: [RecordLink], job: UUID, sweep: UUID?, connection: PostgresConnection, logger: Logger) async throws {
    guard !links.isEmpty else { return }
    // A subscriber is linked to one record: a soft-deleted link of one of these subscribers gives way.
    try await connection.query(
      """
      DELETE FROM sync.records WHERE job_id = \(job) AND deleted_at IS NOT NULL
        AND subscriber_id = ANY(\(links.map(\.subscriberID))::uuid[]) AND record_id <> ALL(\(links.map(\.recordID))::text[])
      """, logger: logger)
    try await connection.query(
      """
      INSERT INTO sync.records AS r (job_id, record_id, subscriber_id, remote_modified, remote_values, local_values, last_seen_sweep, synced_at, deleted_at)
      SELECT \(job), t.record, t.subscriber, t.modified, t.remote::jsonb, t.local::jsonb, \(sweep), now(), NULL
      FROM unnest(\(links.map(\.recordID))::text[], \(links.map(\.subscriberID))::uuid[], \(links.map(\.remoteModified))::text[],
        \(links.map { json($0.remoteValues) })::text[], \(links.map { json($0.localValues) })::text[])
        AS t(record, subscriber, modified, remote, local)
      ON CONFLICT (job_id, record_id) DO UPDATE SET
        subscriber_id = excluded.subscriber_id, remote_modified = excluded.remote_modified,
        remote_values = excluded.remote_values, local_values = excluded.local_values,
        last_seen_sweep = coalesce(excluded.last_seen_sweep, r.last_seen_sweep), synced_at = now(), deleted_at = NULL
      """, logger: logger)
  }

  /// Marks records seen by a full run's sweep without changing them.
  static func markSeen(records: [String], job: UUID, sweep: UUID, connection: PostgresConnection, logger: Logger) async throws {
    guard !records.isEmpty else { return }
    try await connection.query(
      "UPDATE sync.records SET last_seen_sweep = \(sweep) WHERE job_id = \(job) AND record_id = ANY(\(records)::text[])",
      logger: logger)
  }

  static func save(conflicts: [FoundConflict], job: UUID, run: UUID, connection: PostgresConnection, logger: Logger) async throws {
    for conflict in conflicts {
      let pending = conflict.resolution == "pending"
      // An open conflict seen again is brought up to date rather than recorded twice.
      try await connection.query(
        """
        INSERT INTO sync.conflicts (job_id, run_id, record_id, subscriber_id, subscriber_field, base_value, local_value,
          remote_value, policy, resolution, resolved_at)
        VALUES (\(job), \(run), \(conflict.recordID), \(conflict.subscriberID), \(conflict.field), \(jsonText(conflict.base))::jsonb,
          \(jsonText(conflict.local))::jsonb, \(jsonText(conflict.remote))::jsonb, \(conflict.policy.rawValue), \(conflict.resolution),
          CASE WHEN \(pending) THEN NULL ELSE now() END)
        ON CONFLICT (job_id, record_id, subscriber_field) WHERE resolution = 'pending' DO UPDATE SET
          run_id = excluded.run_id, local_value = excluded.local_value, remote_value = excluded.remote_value
        """, logger: logger)
    }
  }

  /// Fields of these records with a conflict waiting for review.
  static func pendingFields(job: UUID, records: [String], connection: PostgresConnection, logger: Logger) async throws -> Set<String> {
    var result = Set<String>()
    let rows = try await connection.query(
      """
      SELECT record_id, subscriber_field FROM sync.conflicts
      WHERE job_id = \(job) AND resolution = 'pending' AND record_id = ANY(\(records)::text[])
      """, logger: logger)
    for try await (record, field) in rows.decode((String, String).self) { result.insert("\(record)/\(field)") }
    return result
  }

  static func save(errors: [RecordError], run: UUID, connection: PostgresConnection, logger: Logger) async throws {
    guard !errors.isEmpty else { return }
    try await connection.query(
      """
      INSERT INTO sync.record_errors (run_id, position, record_id, field, message)
      SELECT \(run), coalesce((SELECT max(position) FROM sync.record_errors WHERE run_id = \(run)), 0) + t.n, t.record, t.field, t.message
      FROM unnest(\(errors.map(\.recordID))::text[], \(errors.map(\.field))::text[], \(errors.map(\.message))::text[])
        WITH ORDINALITY AS t(record, field, message, n)
      WHERE coalesce((SELECT count(*) FROM sync.record_errors WHERE run_id = \(run)), 0) + t.n <= \(maxErrors)
      """, logger: logger)
  }



  static func finish(
    _ run: UUID, status: SyncRunRecord.Status, cursorAfter: String, error: String, connection: PostgresConnection, logger: Logger
  ) async throws {
    try await connection.query(
      """
      UPDATE sync.runs SET status = \(status.rawValue), phase = 'done', cursor_after = \(cursorAfter), error = \(error),
        finished_at = now(), heartbeat_at = now()
      WHERE id = \(run)
      """, logger: logger)
  }
}

/// A run's progress: phase, counts, planned changes and (after a page is applied) its checkpoint.
struct RunProgress: Sendable {
  var run: UUID
  var phase: String
  var checkpoint: String
  var counts: RunCounts
  var planned: [PlannedChange]

  func save(on connection: PostgresConnection, logger: Logger) async throws {
    try await connection.query(
      """
      UPDATE sync.runs SET phase = \(phase), checkpoint = \(checkpoint), counts = \(RunStore.json(counts))::jsonb,
        planned = \(RunStore.json(Array(planned.prefix(RunStore.maxErrors))))::jsonb, heartbeat_at = now()
      WHERE id = \(run)
      """, logger: logger)
  }
}
