import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Jobs (`sync.jobs`) and their field mappings (`sync.field_mappings`), the job lock that keeps
/// one run at a time per job across replicas, and what the scheduler reads.
extension SyncStore {
  /// Stores a new job with its mappings; `SyncStoreError.duplicate` when its name or table has
  /// a job already.
  package func createJob(_ job: SyncJob) async throws -> SyncJob {
    let logger = self.logger
    do {
      return try await client.withTransaction(logger: logger) { connection in
        let row = try await connection.query(
          """
          INSERT INTO sync.jobs (
            name, base_id, table_id, token_env, direction, modified_field, overlap_seconds, default_policy,
            schedule_seconds, reconcile_seconds, max_delete_percent)
          VALUES (
            \(job.name), \(job.baseID), \(job.tableID), \(job.tokenEnv), \(job.direction.rawValue), \(job.modifiedField),
            \(job.overlap), \(job.defaultPolicy.rawValue), \(job.scheduleSeconds), \(job.reconcileSeconds), \(job.maxDeletePercent))
          RETURNING id, created_at
          """, logger: logger
        ).collect().first
        guard let (id, createdAt) = try row?.decode((UUID, Date).self) else {
          throw PostgresError.protocol("INSERT ... RETURNING gave no row")
        }
        try await Self.insertMappings(job.mappings, of: id, connection: connection, logger: logger)
        var stored = job
        stored.id = id
        stored.createdAt = createdAt
        return stored
      }
    } catch  where error.sqlState == "23505" {
      let constraint = error.constraintName ?? ""
      throw SyncStoreError.duplicate(field: constraint.contains("name") ? "name" : "table_id")
    }
  }

  /// Replaces the settings and mappings of job `id` with `job`'s, on the connection holding the
  /// job's lock (cursor and history stay, unless the modified field changes: then the cursor and
  /// the checkpoints of ended runs are cleared and the next run reads the whole table).
  /// `SyncStoreError.duplicate(field: "name")` when another job has the name.
  func updateJob(_ id: UUID, to job: SyncJob, on connection: PostgresConnection) async throws {
    let logger = self.logger
    do {
      try await connection.withTransaction(logger: logger) { connection in
        // Checkpoints by another modified field mean nothing: the next run starts over.
        try await connection.query(
          """
          UPDATE sync.runs SET checkpoint = '' WHERE job_id = \(id) AND status <> 'running'
            AND (SELECT modified_field FROM sync.jobs WHERE id = \(id)) <> \(job.modifiedField)
          """, logger: logger)
        try await connection.query(
          """
          UPDATE sync.jobs SET name = \(job.name), token_env = \(job.tokenEnv), direction = \(job.direction.rawValue),
            cursor = CASE WHEN modified_field = \(job.modifiedField) THEN cursor ELSE '' END,
            modified_field = \(job.modifiedField), overlap_seconds = \(job.overlap), default_policy = \(job.defaultPolicy.rawValue),
            schedule_seconds = \(job.scheduleSeconds), reconcile_seconds = \(job.reconcileSeconds),
            max_delete_percent = \(job.maxDeletePercent)
          WHERE id = \(id)
          """, logger: logger)
        try await connection.query("DELETE FROM sync.field_mappings WHERE job_id = \(id)", logger: logger)
        try await Self.insertMappings(job.mappings, of: id, connection: connection, logger: logger)
      }
    } catch  where error.sqlState == "23505" {
      throw SyncStoreError.duplicate(field: "name")
    }
  }

  private static func insertMappings(
    _ mappings: [SyncJob.Mapping], of job: UUID, connection: PostgresConnection, logger: Logger
  ) async throws {
    for (position, mapping) in mappings.enumerated() {
      try await connection.query(
        """
        INSERT INTO sync.field_mappings (job_id, position, external_field, subscriber_field, conflict_policy)
        VALUES (\(job), \(position), \(mapping.externalField), \(mapping.subscriberField), \(mapping.policy?.rawValue))
        """, logger: logger)
    }
  }

  /// Deletes the job, on the connection holding its lock; its links, runs and conflicts go with
  /// it (ON DELETE CASCADE). False when there was no such job.
  func deleteJob(_ id: UUID, on connection: PostgresConnection) async throws -> Bool {
    try await connection.query("DELETE FROM sync.jobs WHERE id = \(id) RETURNING id", logger: logger).collect().count == 1
  }

  /// Every job, by name.
  package func jobs() async throws -> [SyncJob] {
    try await jobs(id: nil) { query in try await client.query(query, logger: logger) }
  }

  package func job(_ id: UUID) async throws -> SyncJob? {
    try await jobs(id: id) { query in try await client.query(query, logger: logger) }.first
  }

  /// The job as it is now, read on `connection` (the one holding its lock: a run reads its job
  /// there, never from a second pooled connection while it holds the first).
  func job(_ id: UUID, on connection: PostgresConnection) async throws -> SyncJob? {
    try await jobs(id: id) { query in try await connection.query(query, logger: logger) }.first
  }

  private func jobs(id wanted: UUID?, query: (PostgresQuery) async throws -> PostgresRowSequence) async throws -> [SyncJob] {
    var mappings: [UUID: [SyncJob.Mapping]] = [:]
    let mappingRows = try await query(
      """
      SELECT job_id, external_field, subscriber_field, conflict_policy FROM sync.field_mappings
      WHERE \(wanted)::uuid IS NULL OR job_id = \(wanted) ORDER BY job_id, position
      """)
    for try await (jobID, external, field, policy) in mappingRows.decode((UUID, String, String, String?).self) {
      mappings[jobID, default: []].append(
        .init(externalField: external, subscriberField: field, policy: policy.flatMap(ConflictPolicy.init(rawValue:))))
    }
    var jobs: [SyncJob] = []
    let rows = try await query(
      """
      SELECT id, name, base_id, table_id, token_env, direction, created_at, modified_field, overlap_seconds, default_policy,
        schedule_seconds, reconcile_seconds, max_delete_percent, cursor, last_full_sync_at
      FROM sync.jobs WHERE \(wanted)::uuid IS NULL OR id = \(wanted) ORDER BY name
      """)
    for try await row in rows {
      let cells = row.makeRandomAccess()
      let id = try cells["id"].decode(UUID.self)
      let directionText = try cells["direction"].decode(String.self)
      let policyText = try cells["default_policy"].decode(String.self)
      guard let direction = SyncJob.Direction(rawValue: directionText), let policy = ConflictPolicy(rawValue: policyText) else {
        throw PostgresError.protocol("sync.jobs row \(id) has direction '\(directionText)', policy '\(policyText)'")
      }
      var job = SyncJob(
        id: id, name: try cells["name"].decode(String.self), baseID: try cells["base_id"].decode(String.self),
        tableID: try cells["table_id"].decode(String.self), tokenEnv: try cells["token_env"].decode(String.self),
        direction: direction, mappings: mappings[id] ?? [], createdAt: try cells["created_at"].decode(Date.self))
      job.modifiedField = try cells["modified_field"].decode(String.self)
      job.overlap = try cells["overlap_seconds"].decode(Int.self)
      job.defaultPolicy = policy
      job.scheduleSeconds = try cells["schedule_seconds"].decode(Int.self)
      job.reconcileSeconds = try cells["reconcile_seconds"].decode(Int.self)
      job.maxDeletePercent = try cells["max_delete_percent"].decode(Int.self)
      job.cursor = try cells["cursor"].decode(String.self)
      job.lastFullSyncAt = try cells["last_full_sync_at"].decode(Date?.self)
      jobs.append(job)
    }
    return jobs
  }

  /// After a run that succeeded: the job's cursor, and when the run read the whole table, the
  /// time it started (the last full sync).
  func advanceCursor(of job: UUID, to cursor: String, fullSyncAt: Date?, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE sync.jobs SET cursor = \(cursor), last_full_sync_at = coalesce(\(fullSyncAt), last_full_sync_at)
      WHERE id = \(job)
      """, logger: logger)
  }

  /// The last start of every scheduled job's runs (dry runs aside), in one query.
  func lastScheduledStarts() async throws -> [UUID: Date] {
    var lastStarted: [UUID: Date] = [:]
    for try await (id, at) in try await client.query(
      """
      SELECT job_id, max(started_at) FROM sync.runs
      WHERE NOT dry_run AND job_id IN (SELECT id FROM sync.jobs WHERE schedule_seconds > 0) GROUP BY job_id
      """, logger: logger
    ).decode((UUID, Date).self) {
      lastStarted[id] = at
    }
    return lastStarted
  }

  // MARK: - The job lock

  /// Runs `body` on a pooled connection holding the job's session advisory lock, so that no run
  /// of the job starts meanwhile in any replica (a run holds it on the connection it works on);
  /// `SyncStoreError.locked` with the running run when another connection holds it. The lock is
  /// released when `body` returns or throws; a connection whose unlock fails is closed (which
  /// releases it) rather than handed back to the pool holding it.
  func withJobLock<T: Sendable>(_ job: UUID, _ body: (PostgresConnection) async throws -> T) async throws -> T {
    let logger = self.logger
    let key = AdvisoryKey(job)
    return try await client.withConnection { connection in
      let locked = try await (try await connection.query(key.trySessionLock, logger: logger)).decode(Bool.self).elements().first ?? false
      guard locked else {
        let current = try await
          (try await connection.query(
            "SELECT id FROM sync.runs WHERE job_id = \(job) AND status = 'running'", logger: logger
          )).decode(UUID.self).elements().first
        throw SyncStoreError.locked(run: current)
      }
      let result: Result<T, any Error>
      do {
        result = .success(try await body(connection))
      } catch {
        result = .failure(error)
      }
      do {
        try await connection.query(key.unlock, logger: logger)
      } catch {
        logger.error("sync job lock not released; closing the connection", metadata: ["error": "\(error.logDescription)"])
        try? await connection.close()
      }
      return try result.get()
    }
  }
}
