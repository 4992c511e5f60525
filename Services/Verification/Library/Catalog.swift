import Foundation
import HeraldMigrations
import HeraldPostgres
import Logging
import PostgresNIO

/// The catalog of one schema as comparable text: tables, columns (type, nullability, default),
/// constraints (primary, unique, foreign keys with their actions, checks; whether validated),
/// indexes (definition; whether valid) and enums (labels in order). Names of the schema itself
/// are left out of definitions, so a scratch copy compares equal to the live schema.
struct CatalogSnapshot: Sendable, Equatable {
  struct Object: Sendable, Equatable {
    var kind: String
    /// `table.member` for columns and constraints, the name for tables, indexes and enums.
    var name: String
    var definition: String
    /// The table a column or constraint belongs to, and the column's or constraint's own name.
    var table = ""
    var member = ""
  }

  var objects: [String: Object] = [:]

  static func read(schema: String, connection: PostgresConnection, logger: Logger) async throws -> CatalogSnapshot {
    let rows = try await connection.query(
      """
      SELECT 'table', c.relname, '', c.relname, ''
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p')
      UNION ALL
      SELECT 'column', c.relname || '.' || a.attname,
        format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
          || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
          || CASE WHEN a.attidentity <> '' THEN ' IDENTITY' ELSE '' END
          || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END,
        c.relname::text, a.attname::text
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'constraint', c.relname || '.' || con.conname,
        con.contype::text || ' ' || pg_get_constraintdef(con.oid) || CASE WHEN con.convalidated THEN '' ELSE ' [not validated]' END,
        c.relname::text, con.conname::text
      FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = \(schema)
      UNION ALL
      SELECT 'index', ic.relname, pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' [invalid]' END,
        ic.relname::text, ''
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
      WHERE n.nspname = \(schema)
      UNION ALL
      SELECT 'enum', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), t.typname::text, ''
      FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = \(schema) GROUP BY t.typname
      """, logger: logger)
    let qualified = try NSRegularExpression(pattern: "(?<![A-Za-z0-9_\"])\(NSRegularExpression.escapedPattern(for: schema))\\.")
    var snapshot = CatalogSnapshot()
    for try await (kind, name, definition, table, member) in rows.decode((String, String, String, String, String).self) {
      let plain = qualified.stringByReplacingMatches(
        in: definition, range: NSRange(definition.startIndex..., in: definition), withTemplate: "")
      snapshot.objects["\(kind):\(name)"] = Object(kind: kind, name: name, definition: plain, table: table, member: member)
    }
    return snapshot
  }
}

/// Builds the schema a service's migrations produce in a scratch schema and compares it with
/// the live one (SPEC §6: schema drift).
struct DriftCheck: Sendable {
  let client: PostgresClient
  let logger: Logger

  /// The expected catalog of `set` (its first `upTo` migrations, all by default): applied to a
  /// fresh scratch schema, read, dropped.
  func expected(_ set: MigrationSet, upTo: Int? = nil) async throws -> CatalogSnapshot {
    let scratch = "verify_\(set.schema)_\(UUID().uuidString.prefix(8).lowercased())"
    let migrations = MigrationSet(schema: set.schema, migrations: Array(set.migrations.prefix(upTo ?? set.migrations.count)))
    do {
      try await MigrationRunner(lockTimeout: .seconds(10), logger: logger).migrate(migrations, client: client, into: scratch)
      let snapshot = try await client.withConnection { connection in
        try await CatalogSnapshot.read(schema: scratch, connection: connection, logger: logger)
      }
      try await client.query("DROP SCHEMA \(unescaped: scratch) CASCADE", logger: logger)
      return snapshot
    } catch {
      _ = try? await client.query("DROP SCHEMA IF EXISTS \(unescaped: scratch) CASCADE", logger: logger)
      throw error
    }
  }

  /// Names from the catalog go into SQL quoted: a name is never read as SQL.
  static func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

  /// Findings of the live schema against the expected catalog.
  static func compare(schema: String, live: CatalogSnapshot, expected: CatalogSnapshot) -> [Finding] {
    var findings: [Finding] = []
    let component = "schema:\(schema)"
    func finding(
      _ check: String, _ severity: Finding.Severity, _ object: String, _ description: String, suggested: String,
      repair: RepairPlan? = nil
    ) {
      findings.append(
        Finding(
          check: check, component: component, severity: severity, category: .database, description: description,
          affectedObject: "\(schema).\(object)", count: 1, sampleKeys: [], suggestedRepair: suggested, repair: repair))
    }
    func plan(_ statements: [String], review: Bool, risk: String) -> RepairPlan {
      // Definitions are unqualified: they run with the schema first on the search path.
      RepairPlan(
        statements: ["SET LOCAL search_path TO \(Self.quoted(schema))"] + statements, backupQuery: nil, needsReview: review, risk: risk)
    }

    for key in expected.objects.keys.sorted() {
      let want = expected.objects[key]!
      guard let have = live.objects[key] else {
        switch want.kind {
        case "table":
          finding(
            "schema.missing_table", .critical, want.name, "table \(schema).\(want.name) is missing",
            suggested: "restore the table from a backup; its migration created it")
        case "column":
          finding(
            "schema.missing_column", .critical, want.name, "column \(schema).\(want.name) (\(want.definition)) is missing",
            suggested: "add the column back; its data must be restored from a backup",
            repair: plan(
              ["ALTER TABLE \(Self.quoted(want.table)) ADD COLUMN \(Self.quoted(want.member)) \(want.definition)"], review: true,
              risk: "high"))
        case "constraint":
          let type = want.definition.prefix(1)
          let definition = String(want.definition.dropFirst(2))
          let what =
            ["p": "primary key", "f": "foreign key", "u": "unique constraint", "c": "check constraint"][String(type)] ?? "constraint"
          finding(
            "schema.missing_constraint", type == "c" ? .high : .critical, want.name,
            "\(what) \(want.member) on \(schema).\(want.table) is missing (\(definition))",
            suggested: "add the constraint back (fails, and is rolled back, while rows break it)",
            repair: plan(
              ["ALTER TABLE \(Self.quoted(want.table)) ADD CONSTRAINT \(Self.quoted(want.member)) \(definition)"], review: false,
              risk: "medium"))
        case "index":
          // An index behind a constraint is reported with the constraint.
          let backsConstraint = expected.objects.values.contains { $0.kind == "constraint" && $0.member == want.name }
          if !backsConstraint {
            finding(
              "schema.missing_index", .high, want.name, "index \(schema).\(want.name) is missing (\(want.definition))",
              suggested: "create the index", repair: plan([want.definition], review: false, risk: "low"))
          }
        case "enum":
          finding(
            "schema.missing_enum", .critical, want.name, "enum type \(schema).\(want.name) is missing",
            suggested: "create the type (\(want.definition))")
        default: break
        }
        continue
      }
      guard have.definition != want.definition else { continue }
      switch want.kind {
      case "column":
        finding(
          "schema.column_changed", .high, want.name, "column \(schema).\(want.name) is \(have.definition), expected \(want.definition)",
          suggested: "alter the column back to \(want.definition)")
      case "constraint" where have.definition == want.definition + " [not validated]":
        finding(
          "schema.constraint_not_validated", .medium, want.name,
          "constraint \(schema).\(want.name) is not validated (existing rows were never checked)",
          suggested: "validate it",
          repair: plan(
            ["ALTER TABLE \(Self.quoted(want.table)) VALIDATE CONSTRAINT \(Self.quoted(want.member))"], review: false, risk: "low"))
      case "constraint":
        finding(
          "schema.constraint_changed", .high, want.name,
          "constraint \(schema).\(want.name) is \(have.definition.dropFirst(2)), expected \(want.definition.dropFirst(2))",
          suggested: "drop and add it back as expected",
          repair: plan(
            [
              "ALTER TABLE \(Self.quoted(want.table)) DROP CONSTRAINT \(Self.quoted(want.member))",
              "ALTER TABLE \(Self.quoted(want.table)) ADD CONSTRAINT \(Self.quoted(want.member)) \(want.definition.dropFirst(2))",
            ], review: true, risk: "medium"))
      case "index" where have.definition == want.definition + " [invalid]":
        finding(
          "schema.index_invalid", .high, want.name,
          "index \(schema).\(want.name) is invalid (a failed concurrent build): queries do not use it",
          suggested: "rebuild it", repair: plan(["REINDEX INDEX \(Self.quoted(want.name))"], review: false, risk: "low"))
      case "index":
        finding(
          "schema.index_changed", .high, want.name, "index \(schema).\(want.name) is \(have.definition), expected \(want.definition)",
          suggested: "drop and create it as expected",
          repair: plan(["DROP INDEX \(Self.quoted(want.name))", want.definition], review: true, risk: "medium"))
      case "enum":
        finding(
          "schema.enum_changed", .high, want.name, "enum \(schema).\(want.name) has labels \(have.definition), expected \(want.definition)",
          suggested: "restore the labels and their order")
      default: break
      }
    }
    for key in live.objects.keys.sorted() where expected.objects[key] == nil {
      let have = live.objects[key]!
      switch have.kind {
      case "table":
        finding(
          "schema.extra_table", .low, have.name, "table \(schema).\(have.name) is not made by any migration",
          suggested: "drop it once nothing uses it")
      case "column":
        if expected.objects["table:\(have.table)"] != nil {
          finding(
            "schema.extra_column", .low, have.name, "column \(schema).\(have.name) (\(have.definition)) is not made by any migration",
            suggested: "drop it once nothing uses it")
        }
      case "constraint":
        finding(
          "schema.extra_constraint", .medium, have.name,
          "constraint \(schema).\(have.name) (\(have.definition.dropFirst(2))) is not made by any migration",
          suggested: "drop it; it may refuse writes the services make",
          repair: plan(["ALTER TABLE \(Self.quoted(have.table)) DROP CONSTRAINT \(Self.quoted(have.member))"], review: true, risk: "medium")
        )
      case "index":
        let backsConstraint = live.objects.values.contains { $0.kind == "constraint" && $0.member == have.name }
        if !backsConstraint {
          finding(
            "schema.extra_index", .medium, have.name,
            "index \(schema).\(have.name) is not made by any migration (\(have.definition)): it slows every write",
            suggested: "drop the index", repair: plan(["DROP INDEX \(Self.quoted(have.name))"], review: false, risk: "low"))
        }
      case "enum":
        finding(
          "schema.extra_enum", .low, have.name, "enum type \(schema).\(have.name) is not made by any migration",
          suggested: "drop it once nothing uses it")
      default: break
      }
    }
    return findings
  }
}
