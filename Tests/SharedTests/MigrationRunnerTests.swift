import HeraldPostgres
import HeraldTestSupport
import Logging
import PostgresNIO
import Testing

@Suite(.timeLimit(.minutes(3))) struct MigrationRunnerTests {
  let logger = Logger(label: "test.migrations")

  static let base = [
    Migration(version: 1, name: "widgets", sql: "CREATE TABLE widgets (id integer PRIMARY KEY, name text NOT NULL);"),
    // Two statements, and one that fails if it ever runs twice.
    Migration(
      version: 2, name: "widget colour",
      sql: "ALTER TABLE widgets ADD COLUMN colour text; CREATE INDEX widgets_colour_idx ON widgets (colour);"),
  ]

  func tables(_ client: PostgresClient, schema: String) async throws -> [String] {
    var names: [String] = []
    for try await name in try await client.query(
      "SELECT table_name::text FROM information_schema.tables WHERE table_schema = \(schema) ORDER BY 1"
    ).decode(String.self) {
      names.append(name)
    }
    return names
  }

  @Test func appliesOnceAndIsIdempotent() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      let set = MigrationSet(schema: "shop", migrations: Self.base)
      let runner = MigrationRunner(logger: logger)
      #expect(try await runner.migrate(set, client: client) == [1, 2])
      #expect(try await runner.migrate(set, client: client) == [])
      #expect(try await tables(client, schema: "shop") == ["schema_migrations", "widgets"])
      let ledger = try await client.withConnection {
        try await MigrationRunner.ledger(schema: "shop", connection: $0, logger: logger)
      }
      #expect(ledger?.map(\.version) == [1, 2])
      #expect(ledger?.map(\.checksum) == Self.base.map(\.checksum))

      // A later build adds migration 3: only it is applied.
      let grown = MigrationSet(
        schema: "shop",
        migrations: Self.base + [Migration(version: 3, name: "gadgets", sql: "CREATE TABLE gadgets (id integer);")])
      #expect(try await runner.migrate(grown, client: client) == [3])
    }
  }

  @Test func refusesAChangedChecksum() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      let runner = MigrationRunner(logger: logger)
      try await runner.migrate(MigrationSet(schema: "shop", migrations: Self.base), client: client)
      var edited = Self.base
      edited[1].sql += " -- edited after release"
      await #expect {
        try await runner.migrate(MigrationSet(schema: "shop", migrations: edited), client: client)
      } throws: { error in
        guard case .checksumChanged(let schema, let version, let name, let recorded, let expected) = error as? MigrationError
        else { return false }
        return schema == "shop" && version == 2 && name == "widget colour" && recorded == Self.base[1].checksum
          && expected == edited[1].checksum
      }
    }
  }

  @Test func refusesAnAppliedMigrationItDoesNotKnow() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      let runner = MigrationRunner(logger: logger)
      try await runner.migrate(MigrationSet(schema: "shop", migrations: Self.base), client: client)
      let older = MigrationSet(schema: "shop", migrations: [Self.base[0]])
      await #expect {
        try await runner.migrate(older, client: client)
      } throws: { error in
        guard case .unknownApplied(_, let version, let name) = error as? MigrationError else { return false }
        return version == 2 && name == "widget colour" && "\(error)".contains("refusing to start")
      }
    }
  }

  @Test func aFailingMigrationLeavesNothingHalfApplied() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      let runner = MigrationRunner(logger: logger)
      let broken = MigrationSet(
        schema: "shop",
        migrations: Self.base + [
          Migration(version: 3, name: "broken", sql: "CREATE TABLE gadgets (id integer); SELECT no_such_function();")
        ])
      await #expect {
        try await runner.migrate(broken, client: client)
      } throws: { error in
        guard case .failed(_, let version, _, let reason) = error as? MigrationError else { return false }
        return version == 3 && reason.contains("no_such_function")
      }
      // Migrations 1 and 2 ran in the same transaction as 3: none of them is left behind.
      #expect(try await tables(client, schema: "shop") == ["schema_migrations"])
      #expect(try await runner.migrate(MigrationSet(schema: "shop", migrations: Self.base), client: client) == [1, 2])
    }
  }

  @Test func concurrentStartersDoNotBothMigrate() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    let set = MigrationSet(schema: "shop", migrations: Self.base)
    // Four "processes", each with its own pool, start at once.
    let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
      for _ in 0..<4 {
        group.addTask {
          try await withDatabase(url) { client async throws in
            try await MigrationRunner(logger: logger).migrate(set, client: client)
          }
        }
      }
      return try await group.reduce(into: [[Int]]()) { $0.append($1) }
    }
    #expect(applied.filter { !$0.isEmpty } == [[1, 2]])
    try await withDatabase(url) { client async throws in
      let count = try await client.query("SELECT count(*) FROM shop.schema_migrations").collect().first?.decode(Int.self)
      #expect(count == 2)
    }
  }

  @Test func waitsForTheLockOnlyUpToItsBound() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      try await client.withConnection { holder in
        try await holder.query(
          "SELECT pg_advisory_lock(hashtext(\(MigrationRunner.lockKey(schema: "shop"))))", logger: logger)
        let runner = MigrationRunner(lockTimeout: .milliseconds(600), logger: logger)
        await #expect {
          try await runner.migrate(MigrationSet(schema: "shop", migrations: Self.base), client: client)
        } throws: { error in
          guard case .lockTimeout(let schema, _) = error as? MigrationError else { return false }
          return schema == "shop"
        }
      }
    }
  }

  @Test func buildsAScratchCopyFromTheSameMigrations() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { client async throws in
      let set = MigrationSet(schema: "shop", migrations: Self.base)
      let runner = MigrationRunner(logger: logger)
      try await runner.migrate(set, client: client)
      #expect(try await runner.migrate(set, client: client, into: "shop_scratch") == [1, 2])
      #expect(try await tables(client, schema: "shop_scratch") == ["schema_migrations", "widgets"])
    }
  }

  @Test func comparisonFindsGapsAndPending() {
    let set = MigrationSet(
      schema: "shop",
      migrations: Self.base + [Migration(version: 3, name: "three", sql: "SELECT 1;")])
    let applied = [
      AppliedMigration(version: 1, name: "widgets", checksum: Self.base[0].checksum),
      AppliedMigration(version: 3, name: "three", checksum: set.migrations[2].checksum),
    ]
    let comparison = LedgerComparison(applied: applied, known: set)
    #expect(comparison.gaps.map(\.version) == [2])
    #expect(comparison.pending.isEmpty)
    #expect(comparison.isDiverged)
  }
}

@Suite(.timeLimit(.minutes(3))) struct SQLScriptTests {
  @Test func splitsAtTopLevelSemicolonsOnly() {
    let script = #"""
      -- a comment; with a semicolon
      CREATE TABLE a (note text DEFAULT 'x; y', "odd;name" int);
      /* block; comment */ CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
      DO $$ BEGIN PERFORM 1; END $$;
      SELECT 'it''s; fine'
      """#
    let statements = SQLScript.statements(in: script)
    #expect(statements.count == 4)
    #expect(statements[0].hasSuffix(#"CREATE TABLE a (note text DEFAULT 'x; y', "odd;name" int)"#))
    #expect(statements[1].hasSuffix("$body$ SELECT 1; $body$ LANGUAGE sql"))
    #expect(statements[2] == "DO $$ BEGIN PERFORM 1; END $$")
    #expect(statements[3] == "SELECT 'it''s; fine'")
  }

  @Test func ignoresTrailingCommentsAndBlanks() {
    #expect(SQLScript.statements(in: "SELECT 1;\n\n-- done\n") == ["SELECT 1"])
    #expect(SQLScript.statements(in: "  ;; ") == [])
  }
}
