import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Runs (`sync.runs`): their start, progress and end on the connection holding the job's lock,
/// their record errors (`sync.record_errors`), and what GetRun, ListRuns and a scrape read.
extension SyncStore {
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

  /// A run with its record errors; nil when there is none by that id.
  package func run(_ id: UUID) async throws -> SyncRunRecord? {
    guard
      var run = try await client.query("SELECT \(unescaped: Self.runColumns) FROM sync.runs WHERE id = \(id)", logger: logger)
        .collect().first.map(Self.run)
    else { return nil }
    let rows = try await client.query(
      "SELECT record_id, field, message FROM sync.record_errors WHERE run_id = \(id) ORDER BY position", logger: logger)
    for try await (record, field, message) in rows.decode((String, String, String).self) {
      run.errors.append(RecordError(recordID: record, field: field, message: message))
    }
    return run
  }

  /// The job's latest runs, newest first (without their record errors).
  package func runs(of job: UUID, limit: Int) async throws -> [SyncRunRecord] {
    try await client.query(
      "SELECT \(unescaped: Self.runColumns) FROM sync.runs WHERE job_id = \(job) ORDER BY started_at DESC, id LIMIT \(limit)",
      logger: logger
    ).collect().map(Self.run)
  }

  func latestRun(of job: UUID, on connection: PostgresConnection) async throws -> SyncRunRecord? {
    try await connection.query(
      "SELECT \(unescaped: Self.runColumns) FROM sync.runs WHERE job_id = \(job) ORDER BY started_at DESC, id LIMIT 1",
      logger: logger
    ).collect().first.map(Self.run)
  }

  /// A run still marked running whose process is gone (the caller holds the job's lock, so no
  /// process runs it): it ends as interrupted. False when it was not running.
  func markInterrupted(_ run: UUID, on connection: PostgresConnection) async throws -> Bool {
    try await connection.query(
      """
      UPDATE sync.runs SET status = 'interrupted', finished_at = now(),
        error = 'the process running it stopped (crash or shutdown); resumed by a later run'
      WHERE id = \(run) AND status = 'running'
      RETURNING id
      """, logger: logger
    ).collect().count == 1
  }

  /// Records a new run, running.
  func insertRun(_ run: NewRun, on connection: PostgresConnection) async throws -> SyncRunRecord {
    let row = try await connection.query(
      """
      INSERT INTO sync.runs (job_id, dry_run, full_sync, sweep_id, resumed_from, cursor_before, checkpoint)
      VALUES (\(run.jobID), \(run.dryRun), \(run.full), \(run.sweepID), \(run.resumedFrom), \(run.cursorBefore), \(run.checkpoint))
      RETURNING \(unescaped: Self.runColumns)
      """, logger: logger
    ).collect().first
    guard let row else { throw PostgresError.protocol("INSERT INTO sync.runs RETURNING gave no row") }
    return try Self.run(row)
  }

  func saveProgress(_ progress: RunProgress, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE sync.runs SET phase = \(progress.phase), checkpoint = \(progress.checkpoint),
        counts = \(Self.json(progress.counts))::jsonb, planned = \(Self.json(Array(progress.planned.prefix(Self.maxErrors))))::jsonb,
        heartbeat_at = now()
      WHERE id = \(progress.run)
      """, logger: logger)
  }

  /// Adds record errors to the run's, up to `maxErrors` in all.
  func saveErrors(_ errors: [RecordError], run: UUID, on connection: PostgresConnection) async throws {
    guard !errors.isEmpty else { return }
    try await connection.query(
      """
      INSERT INTO sync.record_errors (run_id, position, record_id, field, message)
      SELECT \(run), coalesce((SELECT max(position) FROM sync.record_errors WHERE run_id = \(run)), 0) + t.n, t.record, t.field, t.message
      FROM unnest(
          \(errors.map { Self.storable($0.recordID) })::text[], \(errors.map { Self.storable($0.field) })::text[],
          \(errors.map { Self.storable($0.message) })::text[])
        WITH ORDINALITY AS t(record, field, message, n)
      WHERE coalesce((SELECT count(*) FROM sync.record_errors WHERE run_id = \(run)), 0) + t.n <= \(Self.maxErrors)
      """, logger: logger)
  }

  /// The run's end: its status, the cursor it reached and why it ended early ("" when it did not).
  func finishRun(
    _ run: UUID, status: SyncRunRecord.Status, cursorAfter: String, error: String, on connection: PostgresConnection
  ) async throws {
    try await connection.query(
      """
      UPDATE sync.runs SET status = \(status.rawValue), phase = 'done', cursor_after = \(cursorAfter), error = \(Self.storable(error)),
        finished_at = now(), heartbeat_at = now()
      WHERE id = \(run)
      """, logger: logger)
  }

  /// Runs in progress and conflicts waiting for review (what a metrics scrape reads), each
  /// counted through its partial index (`runs_one_running_idx`, `conflicts_pending_idx`).
  package func openWork() async throws -> (runsRunning: Int64, conflictsPending: Int64) {
    let row = try await client.query(
      """
      SELECT (SELECT count(*) FROM sync.runs WHERE status = 'running'),
        (SELECT count(*) FROM sync.conflicts WHERE resolution = 'pending')
      """, logger: logger
    ).collect().first
    guard let (running, pending) = try row?.decode((Int64, Int64).self) else { return (0, 0) }
    return (running, pending)
  }
}
