import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Every SQL statement of the sync service, on its own `sync` schema, by area: jobs and their
/// field mappings, the job lock and the scheduler's reading (`SyncStore+Jobs.swift`), runs with
/// their progress and record errors (`+Runs`), the links between remote records and subscribers
/// that a run reads and writes page by page (`+Records`), and conflicts (`+Conflicts`). A run
/// works on the one connection that holds its job's lock: the methods taking a connection run
/// on it (those that need several statements at once open the transaction themselves).
package struct SyncStore: Sendable {
  /// The most record errors (and planned changes of a dry run) kept per run.
  static let maxErrors = 1_000

  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  static func json<T: Encodable>(_ value: T) -> String {
    String(decoding: (try? JSONEncoder().encode(value)) ?? Data("{}".utf8), as: UTF8.self)
  }

  static func jsonText(_ value: JSONValue?) -> String? {
    value.map { json($0) }
  }

  /// Free text (an error message, a record id in a report) as PostgreSQL can store it: a NUL
  /// character, which no text or jsonb value may hold, becomes U+FFFD.
  static func storable(_ text: String) -> String {
    text.contains("\u{0}") ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
  }
}

/// What the store reports that callers map to their own errors.
package enum SyncStoreError: Error, Equatable {
  /// Another job has this name, or this table (`field` is `name` or `table_id`).
  case duplicate(field: String)
  /// The job's lock is held, by the run given when one is recorded as running.
  case locked(run: UUID?)
}
