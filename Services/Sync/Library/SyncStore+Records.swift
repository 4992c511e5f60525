import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// The links between remote records and subscribers (`sync.records`), with both sides' values at
/// the last sync: what a run reads page by page, writes with its checkpoint, sweeps at the end of
/// a full read, and pushes from. Every method runs on the connection of the run's job lock.
extension SyncStore {
  /// The links of these records, by record id.
  func links(of job: UUID, records: [String], on connection: PostgresConnection) async throws -> [String: RecordLink] {
    var links: [String: RecordLink] = [:]
    let rows = try await connection.query(
      """
      SELECT record_id, subscriber_id, remote_modified, remote_values::text, local_values::text, deleted_at IS NOT NULL
      FROM sync.records WHERE job_id = \(job) AND record_id = ANY(\(records)::text[])
      """, logger: logger)
    for try await (record, subscriber, modified, remote, local, deleted) in rows.decode((String, UUID, String, String, String, Bool).self) {
      links[record] = RecordLink(
        recordID: record, subscriber: subscriber, modified: modified, remote: remote, local: local, deleted: deleted)
    }
    return links
  }

  /// The links (live or soft-deleted) of these subscribers, whichever records they are of.
  func links(of job: UUID, subscribers: [UUID], on connection: PostgresConnection) async throws -> [SubscriberLink] {
    try await connection.query(
      """
      SELECT subscriber_id, record_id, deleted_at IS NOT NULL FROM sync.records
      WHERE job_id = \(job) AND subscriber_id = ANY(\(subscribers)::uuid[])
      """, logger: logger
    ).decode((UUID, String, Bool).self).elements().map { SubscriberLink(subscriberID: $0, recordID: $1, deleted: $2) }
  }

  /// Writes what a page (or a batch of pushes) did in one transaction with the run's progress:
  /// a crash before the commit re-reads the page, after it never does.
  func commitPage(_ page: PageWrite, job: UUID, on connection: PostgresConnection) async throws {
    try await connection.withTransaction(logger: logger) { connection in
      try await saveLinks(page.links, job: job, sweep: page.sweep, on: connection)
      if let sweep = page.sweep { try await markSeen(page.seen, job: job, sweep: sweep, on: connection) }
      try await saveConflicts(page.conflicts, job: job, run: page.progress.run, on: connection)
      try await saveErrors(page.errors, run: page.progress.run, on: connection)
      try await saveProgress(page.progress, on: connection)
    }
  }

  /// Writes links (new or changed snapshots); `sweep` marks them seen by a full run.
  private func saveLinks(_ links: [RecordLink], job: UUID, sweep: UUID?, on connection: PostgresConnection) async throws {
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
        \(links.map { Self.json($0.remoteValues) })::text[], \(links.map { Self.json($0.localValues) })::text[])
        AS t(record, subscriber, modified, remote, local)
      ON CONFLICT (job_id, record_id) DO UPDATE SET
        subscriber_id = excluded.subscriber_id, remote_modified = excluded.remote_modified,
        remote_values = excluded.remote_values, local_values = excluded.local_values,
        last_seen_sweep = coalesce(excluded.last_seen_sweep, r.last_seen_sweep), synced_at = now(), deleted_at = NULL
      """, logger: logger)
  }

  /// Marks records seen by a full run's sweep without changing them.
  private func markSeen(_ records: [String], job: UUID, sweep: UUID, on connection: PostgresConnection) async throws {
    guard !records.isEmpty else { return }
    try await connection.query(
      "UPDATE sync.records SET last_seen_sweep = \(sweep) WHERE job_id = \(job) AND record_id = ANY(\(records)::text[])",
      logger: logger)
  }

  // MARK: - Reconciliation

  /// How many records of the job are linked (not soft-deleted).
  func linkedCount(of job: UUID, on connection: PostgresConnection) async throws -> Int {
    try await
      (try await connection.query(
        "SELECT count(*)::int FROM sync.records WHERE job_id = \(job) AND deleted_at IS NULL", logger: logger
      )).decode(Int.self).elements().first ?? 0
  }

  /// Linked records that the sweep did not see, by record id.
  func unseenLinks(of job: UUID, sweep: UUID, on connection: PostgresConnection) async throws -> [(record: String, subscriber: UUID)] {
    try await connection.query(
      """
      SELECT record_id, subscriber_id FROM sync.records
      WHERE job_id = \(job) AND deleted_at IS NULL AND last_seen_sweep IS DISTINCT FROM \(sweep)
      ORDER BY record_id
      """, logger: logger
    ).decode((String, UUID).self).elements().map { (record: $0, subscriber: $1) }
  }

  /// Soft-deletes the link of a record the table no longer has.
  func markDeleted(_ record: String, job: UUID, on connection: PostgresConnection) async throws {
    try await connection.query(
      "UPDATE sync.records SET deleted_at = now() WHERE job_id = \(job) AND record_id = \(record)", logger: logger)
  }

  // MARK: - Push

  /// Up to `limit` live links after record `after`, by record id (the pages a push goes through).
  func liveLinks(of job: UUID, after: String, limit: Int, on connection: PostgresConnection) async throws -> [RecordLink] {
    try await connection.query(
      """
      SELECT record_id, subscriber_id, remote_modified, remote_values::text, local_values::text FROM sync.records
      WHERE job_id = \(job) AND deleted_at IS NULL AND record_id > \(after) ORDER BY record_id LIMIT \(limit)
      """, logger: logger
    ).decode((String, UUID, String, String, String).self).elements().map {
      RecordLink(recordID: $0, subscriber: $1, modified: $2, remote: $3, local: $4, deleted: false)
    }
  }
}

extension RecordLink {
  /// A link as read from `sync.records` (the values as JSON text).
  fileprivate init(recordID: String, subscriber: UUID, modified: String, remote: String, local: String, deleted: Bool) {
    self.init(
      recordID: recordID, subscriberID: subscriber, remoteModified: modified, remoteValues: JSONValue.parse(remote)?.object ?? [:],
      localValues: JSONValue.parse(local)?.object ?? [:], deleted: deleted)
  }
}
