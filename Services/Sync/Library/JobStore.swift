import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// What wins when both sides changed a field since the last sync (SPEC §5).
package enum ConflictPolicy: String, Sendable, CaseIterable {
  case localWins = "local_wins", remoteWins = "remote_wins", lastWriterWins = "last_writer_wins", manual
}

package struct SyncJob: Sendable, Equatable {
  package enum Direction: String, Sendable { case pull, push, both }
  package struct Mapping: Sendable, Equatable {
    package var externalField: String
    package var subscriberField: String
    /// nil: the job's default policy.
    package var policy: ConflictPolicy?

    package init(externalField: String, subscriberField: String, policy: ConflictPolicy? = nil) {
      self.externalField = externalField
      self.subscriberField = subscriberField
      self.policy = policy
    }
  }

  package var id: UUID?
  package var name: String
  package var baseID: String
  package var tableID: String
  package var tokenEnv: String
  package var direction: Direction
  package var mappings: [Mapping]
  package var createdAt: Date?
  /// The remote last-modified field incremental pulls filter and sort on; "" when there is none.
  package var modifiedField = ""
  package var overlap: Int = 60
  package var defaultPolicy: ConflictPolicy = .remoteWins
  /// Seconds between scheduled runs; 0 = on demand only.
  package var scheduleSeconds = 0
  package var reconcileSeconds = 86_400
  package var maxDeletePercent = 10
  package var cursor = ""
  package var lastFullSyncAt: Date?

  package var pulls: Bool { direction != .push }
  package var pushes: Bool { direction != .pull }

  package func policy(of subscriberField: String) -> ConflictPolicy {
    mappings.first { $0.subscriberField == subscriberField }?.policy ?? defaultPolicy
  }
}

package enum JobStoreError: Error, Equatable {
  case duplicate(field: String)
}

package protocol JobStore: Sendable {
  func create(_ job: SyncJob) async throws -> SyncJob
  func all() async throws -> [SyncJob]
  func get(id: UUID) async throws -> SyncJob?
  /// Replaces the job's settings and mappings (cursor and history stay, unless the modified
  /// field changes: then the cursor is cleared and the next run reads the whole table).
  func update(_ job: SyncJob, on connection: PostgresConnection) async throws
  func delete(id: UUID, on connection: PostgresConnection) async throws -> Bool
}

package struct PostgresJobStore: JobStore {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  package func create(_ job: SyncJob) async throws -> SyncJob {
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
    } catch where error.sqlState == "23505" {
      let constraint = error.constraintName ?? ""
      throw JobStoreError.duplicate(field: constraint.contains("name") ? "name" : "table_id")
    }
  }

  package func update(_ job: SyncJob, on connection: PostgresConnection) async throws {
    let logger = self.logger
    let id = job.id!
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
    } catch where error.sqlState == "23505" {
      throw JobStoreError.duplicate(field: "name")
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

  package func delete(id: UUID, on connection: PostgresConnection) async throws -> Bool {
    // Links, runs and conflicts go with the job (ON DELETE CASCADE).
    try await connection.query("DELETE FROM sync.jobs WHERE id = \(id) RETURNING id", logger: logger).collect().count == 1
  }

  package func all() async throws -> [SyncJob] {
    try await jobs(id: nil)
  }

  package func get(id: UUID) async throws -> SyncJob? {
    try await jobs(id: id).first
  }

  private func jobs(id wanted: UUID?) async throws -> [SyncJob] {
    var mappings: [UUID: [SyncJob.Mapping]] = [:]
    let mappingRows = try await client.query(
      """
      SELECT job_id, external_field, subscriber_field, conflict_policy FROM sync.field_mappings
      WHERE \(wanted)::uuid IS NULL OR job_id = \(wanted) ORDER BY job_id, position
      """, logger: logger)
    for try await (jobID, external, field, policy) in mappingRows.decode((UUID, String, String, String?).self) {
      mappings[jobID, default: []].append(
        .init(externalField: external, subscriberField: field, policy: policy.flatMap(ConflictPolicy.init(rawValue:))))
    }
    var jobs: [SyncJob] = []
    let rows = try await client.query(
      """
      SELECT id, name, base_id, table_id, token_env, direction, created_at, modified_field, overlap_seconds, default_policy,
        schedule_seconds, reconcile_seconds, max_delete_percent, cursor, last_full_sync_at
      FROM sync.jobs WHERE \(wanted)::uuid IS NULL OR id = \(wanted) ORDER BY name
      """, logger: logger)
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
}
