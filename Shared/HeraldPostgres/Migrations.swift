import Crypto
import Foundation
import HeraldCore
import Logging
import PostgresNIO

/// One schema change. The SQL uses unqualified names: the runner sets `search_path` to the target
/// schema, so the same migrations build the live schema or a scratch copy for drift checks.
package struct Migration: Sendable, Hashable {
  package var version: Int
  package var name: String
  package var sql: String

  package init(version: Int, name: String, sql: String) {
    self.version = version
    self.name = name
    self.sql = sql
  }

  /// SHA-256 of the SQL, hex-encoded; recorded in the ledger when the migration is applied.
  package var checksum: String {
    SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
  }
}

/// A service's ordered migrations for its own schema.
package struct MigrationSet: Sendable {
  package let schema: String
  package let migrations: [Migration]

  /// Versions must run 1, 2, 3... without gaps; a schema name must be a plain identifier.
  package init(schema: String, migrations: [Migration]) {
    precondition(Identifier.isValid(schema), "schema name '\(schema)' is not a plain identifier")
    for (index, migration) in migrations.enumerated() {
      precondition(
        migration.version == index + 1,
        "\(schema) migrations must be numbered 1, 2, 3...; found \(migration.version) at position \(index + 1)")
    }
    self.schema = schema
    self.migrations = migrations
  }
}

package enum Identifier {
  /// Lower-case letters, digits and underscores, not starting with a digit, at most 63 bytes.
  package static func isValid(_ name: String) -> Bool {
    guard let first = name.utf8.first, name.utf8.count <= 63, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
    else { return false }
    return name.utf8.allSatisfy {
      (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
        || $0 == UInt8(ascii: "_")
    }
  }
}

/// A row of `<schema>.schema_migrations`.
package struct AppliedMigration: Sendable, Hashable {
  package var version: Int
  package var name: String
  package var checksum: String

  package init(version: Int, name: String, checksum: String) {
    self.version = version
    self.name = name
    self.checksum = checksum
  }
}

/// The ledger of a schema compared with the migrations a build knows.
package struct LedgerComparison: Sendable, Equatable {
  package struct ChangedChecksum: Sendable, Equatable {
    package var version: Int
    package var name: String
    package var recorded: String
    package var expected: String
  }

  package var changed: [ChangedChecksum] = []
  /// Applied migrations this build does not know.
  package var unknown: [AppliedMigration] = []
  /// Known migrations not applied yet.
  package var pending: [Migration] = []
  /// Pending migrations older than an applied one (a hole in the ledger).
  package var gaps: [Migration] = []

  package init(applied: [AppliedMigration], known: MigrationSet) {
    let knownByVersion = Dictionary(uniqueKeysWithValues: known.migrations.map { ($0.version, $0) })
    let appliedVersions = Set(applied.map(\.version))
    for row in applied.sorted(by: { $0.version < $1.version }) {
      guard let migration = knownByVersion[row.version] else {
        unknown.append(row)
        continue
      }
      if migration.checksum != row.checksum {
        changed.append(.init(version: row.version, name: migration.name, recorded: row.checksum, expected: migration.checksum))
      }
    }
    let newestApplied = appliedVersions.max() ?? 0
    for migration in known.migrations where !appliedVersions.contains(migration.version) {
      if migration.version < newestApplied { gaps.append(migration) } else { pending.append(migration) }
    }
  }

  package var isDiverged: Bool { !changed.isEmpty || !unknown.isEmpty || !gaps.isEmpty }
}

package enum MigrationError: Error, CustomStringConvertible {
  case checksumChanged(schema: String, version: Int, name: String, recorded: String, expected: String)
  case unknownApplied(schema: String, version: Int, name: String)
  case gap(schema: String, version: Int, name: String)
  case lockTimeout(schema: String, waited: Duration)
  case failed(schema: String, version: Int, name: String, reason: String)

  package var description: String {
    switch self {
    case .checksumChanged(let schema, let version, let name, let recorded, let expected):
      return "\(schema): migration \(version) '\(name)' was changed after it was applied "
        + "(recorded checksum \(recorded), this build has \(expected)); refusing to start"
    case .unknownApplied(let schema, let version, let name):
      return "\(schema): applied migration \(version) '\(name)' is not known to this build "
        + "(is an older build running against a newer database?); refusing to start"
    case .gap(let schema, let version, let name):
      return "\(schema): migration \(version) '\(name)' is not applied but a later one is; refusing to start"
    case .lockTimeout(let schema, let waited):
      return "\(schema): could not take the migration lock within \(waited) (another instance is migrating)"
    case .failed(let schema, let version, let name, let reason):
      return "\(schema): migration \(version) '\(name)' failed: \(reason); nothing of it was applied"
    }
  }

  /// The first divergence a comparison found, as an error.
  static func first(in comparison: LedgerComparison, schema: String) -> MigrationError? {
    if let changed = comparison.changed.first {
      return .checksumChanged(
        schema: schema, version: changed.version, name: changed.name, recorded: changed.recorded, expected: changed.expected)
    }
    if let unknown = comparison.unknown.first {
      return .unknownApplied(schema: schema, version: unknown.version, name: unknown.name)
    }
    if let gap = comparison.gaps.first { return .gap(schema: schema, version: gap.version, name: gap.name) }
    return nil
  }
}

/// Applies a service's migrations at start-up.
///
/// Under a session advisory lock (taken with `pg_try_advisory_lock`, retried up to a bounded wait)
/// it creates the schema and its ledger, refuses to go on if the ledger diverges from this build
/// (changed checksum, unknown applied migration, gap), and applies every pending migration in one
/// transaction, so a failure leaves nothing half-applied.
package struct MigrationRunner: Sendable {
  package var lockTimeout: Duration
  package var logger: Logger

  package init(lockTimeout: Duration = .seconds(60), logger: Logger) {
    self.lockTimeout = lockTimeout
    self.logger = logger
  }

  /// Applies `set` to its own schema, or to `schema` when given (a scratch copy). Returns the
  /// versions applied by this call (empty when the schema was already current).
  @discardableResult
  package func migrate(_ set: MigrationSet, client: PostgresClient, into schema: String? = nil) async throws -> [Int] {
    let schema = schema ?? set.schema
    precondition(Identifier.isValid(schema), "schema name '\(schema)' is not a plain identifier")
    return try await client.withConnection { connection in
      try await self.withMigrationLock(schema: schema, connection: connection) {
        try await self.applyPending(set, schema: schema, connection: connection)
      }
    }
  }

  /// Reads a schema's ledger; nil when the schema or its ledger table does not exist.
  package static func ledger(schema: String, connection: PostgresConnection, logger: Logger) async throws -> [AppliedMigration]? {
    let exists =
      try await connection.query(
        "SELECT to_regclass(\(schema + ".schema_migrations")) IS NOT NULL", logger: logger
      ).collect().first?.decode(Bool.self) ?? false
    guard exists else { return nil }
    var rows: [AppliedMigration] = []
    let sequence = try await connection.query(
      "SELECT version, name, checksum FROM \(unescaped: schema).schema_migrations ORDER BY version", logger: logger)
    for try await (version, name, checksum) in sequence.decode((Int, String, String).self) {
      rows.append(AppliedMigration(version: version, name: name, checksum: checksum))
    }
    return rows
  }

  /// The advisory lock key of a schema's migrations; verification takes it too while checking drift.
  package static func lockKey(schema: String) -> String { "herald.migrations.\(schema)" }

  private func withMigrationLock<T: Sendable>(
    schema: String, connection: PostgresConnection, _ body: () async throws -> T
  ) async throws -> T {
    let key = Self.lockKey(schema: schema)
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: lockTimeout)
    var announced = false
    while true {
      let taken =
        try await connection.query("SELECT pg_try_advisory_lock(hashtext(\(key)))", logger: logger)
        .collect().first?.decode(Bool.self) ?? false
      if taken { break }
      if clock.now >= deadline { throw MigrationError.lockTimeout(schema: schema, waited: lockTimeout) }
      if !announced {
        logger.info("waiting for the migration lock", metadata: ["schema": "\(schema)"])
        announced = true
      }
      try await Task.sleep(for: .milliseconds(200))
    }
    do {
      let result = try await body()
      try await connection.query("SELECT pg_advisory_unlock(hashtext(\(key)))", logger: logger)
      return result
    } catch {
      _ = try? await connection.query("SELECT pg_advisory_unlock(hashtext(\(key)))", logger: logger)
      throw error
    }
  }

  private func applyPending(_ set: MigrationSet, schema: String, connection: PostgresConnection) async throws -> [Int] {
    // Only when missing: where the schema is made for the service's role beforehand (deploy/postgres/
    // roles.sql), that role has no CREATE on the database, and CREATE SCHEMA IF NOT EXISTS would
    // still be refused.
    let exists =
      try await connection.query("SELECT to_regnamespace(\(schema)) IS NOT NULL", logger: logger)
      .collect().first?.decode(Bool.self) ?? false
    if !exists {
      try await connection.query("CREATE SCHEMA \(unescaped: schema)", logger: logger)
    }
    try await connection.query(
      """
      CREATE TABLE IF NOT EXISTS \(unescaped: schema).schema_migrations (
        version integer PRIMARY KEY CHECK (version > 0),
        name text NOT NULL,
        checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
        applied_at timestamptz NOT NULL DEFAULT now(),
        execution_ms integer NOT NULL
      )
      """, logger: logger)
    let applied = try await Self.ledger(schema: schema, connection: connection, logger: logger) ?? []
    let comparison = LedgerComparison(applied: applied, known: set)
    if let error = MigrationError.first(in: comparison, schema: schema) { throw error }
    guard !comparison.pending.isEmpty else {
      logger.debug("schema is current", metadata: ["schema": "\(schema)", "version": "\(applied.count)"])
      return []
    }

    let logger = self.logger
    do {
      return try await applyInTransaction(comparison.pending, schema: schema, connection: connection, logger: logger)
    } catch let error as PostgresTransactionError {
      // Surface the migration's own error, not the transaction wrapper.
      if let failure = error.closureError as? MigrationError { throw failure }
      throw error
    }
  }

  private func applyInTransaction(
    _ pending: [Migration], schema: String, connection: PostgresConnection, logger: Logger
  ) async throws -> [Int] {
    try await connection.withTransaction(logger: logger) { transaction in
      var done: [Int] = []
      for migration in pending {
        let started = ContinuousClock.now
        do {
          try await transaction.query("SET LOCAL search_path TO \(unescaped: schema)", logger: logger)
          for statement in SQLScript.statements(in: migration.sql) {
            try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
          }
        } catch {
          throw MigrationError.failed(schema: schema, version: migration.version, name: migration.name, reason: error.databaseMessage)
        }
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        try await transaction.query(
          """
          INSERT INTO \(unescaped: schema).schema_migrations (version, name, checksum, execution_ms)
          VALUES (\(migration.version), \(migration.name), \(migration.checksum), \(milliseconds))
          """, logger: logger)
        logger.info(
          "applied migration",
          metadata: ["schema": "\(schema)", "version": "\(migration.version)", "name": "\(migration.name)", "ms": "\(milliseconds)"])
        done.append(migration.version)
      }
      return done
    }
  }
}

/// Splits a SQL script into statements at top-level semicolons, leaving semicolons inside quoted
/// strings, quoted identifiers, dollar-quoted bodies and comments alone. (PostgreSQL's extended
/// protocol, which postgres-nio speaks, takes one statement at a time.)
package enum SQLScript {
  package static func statements(in script: String) -> [String] {
    let characters = Array(script.unicodeScalars)
    var statements: [String] = []
    var current = String.UnicodeScalarView()
    var index = 0

    func flush() {
      let statement = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
      if !statement.isEmpty && !isOnlyComments(statement) { statements.append(statement) }
      current = String.UnicodeScalarView()
    }
    func peek(_ offset: Int) -> Unicode.Scalar? {
      index + offset < characters.count ? characters[index + offset] : nil
    }
    /// Copies characters up to and including `terminator`.
    func copy(through terminator: [Unicode.Scalar]) {
      while index < characters.count {
        if Array(characters[index..<min(index + terminator.count, characters.count)]) == terminator {
          current.append(contentsOf: terminator)
          index += terminator.count
          return
        }
        current.append(characters[index])
        index += 1
      }
    }

    while index < characters.count {
      let character = characters[index]
      switch character {
      case "'", "\"":
        current.append(character)
        index += 1
        copy(through: [character])
      case "-" where peek(1) == "-":
        copy(through: ["\n"])
      case "/" where peek(1) == "*":
        current.append(contentsOf: ["/", "*"])
        index += 2
        copy(through: ["*", "/"])
      case "$":
        // A dollar quote: $$ or $tag$ (tag letters, digits, underscores, not starting with a digit).
        var end = index + 1
        while end < characters.count,
          characters[end] == "_" || characters[end].properties.isAlphabetic
            || (end > index + 1 && ("0"..."9").contains(characters[end]))
        {
          end += 1
        }
        if end < characters.count, characters[end] == "$" {
          let tag = Array(characters[index...end])
          current.append(contentsOf: tag)
          index = end + 1
          copy(through: tag)
        } else {
          current.append(character)
          index += 1
        }
      case ";":
        index += 1
        flush()
      default:
        current.append(character)
        index += 1
      }
    }
    flush()
    return statements
  }

  private static func isOnlyComments(_ statement: String) -> Bool {
    statement.split(separator: "\n").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
  }
}
