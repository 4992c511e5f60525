import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

package struct SyncJob: Sendable, Equatable {
  package enum Direction: String, Sendable { case pull, push, both }
  package struct Mapping: Sendable, Equatable {
    package var externalField: String
    package var subscriberField: String
  }

  package var id: UUID?
  package var name: String
  package var baseID: String
  package var tableID: String
  package var tokenEnv: String
  package var direction: Direction
  package var mappings: [Mapping]
  package var createdAt: Date?
}

package enum JobStoreError: Error, Equatable {
  case duplicate(field: String)
}

package protocol JobStore: Sendable {
  func create(_ job: SyncJob) async throws -> SyncJob
  func all() async throws -> [SyncJob]
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
          INSERT INTO sync.jobs (name, base_id, table_id, token_env, direction)
          VALUES (\(job.name), \(job.baseID), \(job.tableID), \(job.tokenEnv), \(job.direction.rawValue))
          RETURNING id, created_at
          """, logger: logger
        ).collect().first
        guard let (id, createdAt) = try row?.decode((UUID, Date).self) else {
          throw PostgresError.protocol("INSERT ... RETURNING gave no row")
        }
        for (position, mapping) in job.mappings.enumerated() {
          try await connection.query(
            """
            INSERT INTO sync.field_mappings (job_id, position, external_field, subscriber_field)
            VALUES (\(id), \(position), \(mapping.externalField), \(mapping.subscriberField))
            """, logger: logger)
        }
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

  package func all() async throws -> [SyncJob] {
    var mappings: [UUID: [SyncJob.Mapping]] = [:]
    let mappingRows = try await client.query(
      "SELECT job_id, external_field, subscriber_field FROM sync.field_mappings ORDER BY job_id, position",
      logger: logger)
    for try await (jobID, external, field) in mappingRows.decode((UUID, String, String).self) {
      mappings[jobID, default: []].append(.init(externalField: external, subscriberField: field))
    }
    var jobs: [SyncJob] = []
    let rows = try await client.query(
      "SELECT id, name, base_id, table_id, token_env, direction, created_at FROM sync.jobs ORDER BY name",
      logger: logger)
    for try await (id, name, base, table, tokenEnv, direction, createdAt) in rows.decode(
      (UUID, String, String, String, String, String, Date).self)
    {
      guard let direction = SyncJob.Direction(rawValue: direction) else {
        throw PostgresError.protocol("sync.jobs row \(id) has direction '\(direction)'")
      }
      jobs.append(
        SyncJob(
          id: id, name: name, baseID: base, tableID: table, tokenEnv: tokenEnv, direction: direction,
          mappings: mappings[id] ?? [], createdAt: createdAt))
    }
    return jobs
  }
}
