import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldServerKit
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import PostgresNIO
import ServiceLifecycle
import Synchronization

package enum VerificationError: Error, CustomStringConvertible {
  case unknownComponent(String)
  case unknownSchema(String)

  package var description: String {
    switch self {
    case .unknownComponent(let name): return "component '\(name)' is not one of schema, ledger, data, sync, health"
    case .unknownSchema(let name):
      return "schema '\(name)' is not a Herald schema (known: \(HeraldMigrations.all.map(\.schema).joined(separator: ", ")))"
    }
  }
}

/// Runs the checks (SPEC §6), on demand and on a schedule, and stores each run as a report; tracks
/// issues across reports by fingerprint and raises alerts.
package final class Verifier: Sendable {
  package static let components = ["schema", "ledger", "data", "sync", "health"]

  let client: PostgresClient
  let store: VerificationStore
  let health: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  let settings: VerificationSettings
  let logger: Logger
  /// One verification at a time per process (a scheduled one and one on demand queue up).
  private let turn = AsyncSemaphore()
  /// Expected catalogs by schema and number of migrations.
  private let expected = Mutex([String: CatalogSnapshot]())

  package init(
    client: PostgresClient, health: [String: GRPCClient<HTTP2ClientTransport.Posix>], settings: VerificationSettings, logger: Logger
  ) {
    self.client = client
    self.store = VerificationStore(client: client, logger: logger)
    self.health = health
    self.settings = settings
    self.logger = logger
  }

  /// The catalog `set`'s first `upTo` migrations build, made in a scratch schema once per process.
  func expectedCatalog(_ set: MigrationSet, upTo: Int? = nil) async throws -> CatalogSnapshot {
    let count = min(upTo ?? set.migrations.count, set.migrations.count)
    let key = "\(set.schema)@\(count)"
    if let known = expected.withLock({ $0[key] }) { return known }
    let built = try await DriftCheck(client: client, logger: logger).expected(set, upTo: count)
    expected.withLock { $0[key] = built }
    return built
  }

  /// How many of `set`'s migrations the live schema has applied (in order, no gaps); nil when it
  /// has no ledger.
  static func appliedPrefix(_ set: MigrationSet, connection: PostgresConnection, logger: Logger) async throws -> Int? {
    guard let ledger = try await MigrationRunner.ledger(schema: set.schema, connection: connection, logger: logger) else { return nil }
    let applied = Set(ledger.map(\.version))
    return set.migrations.prefix { applied.contains($0.version) }.count
  }

  /// Runs the checks of `component` (nil: all) and stores the report.
  package func run(component: String?, schemas: [String] = []) async throws -> StoredReport {
    if let component, !Self.components.contains(component) { throw VerificationError.unknownComponent(component) }
    let sets =
      try schemas.isEmpty
      ? HeraldMigrations.all
      : schemas.map { name in
        guard let set = HeraldMigrations.set(forSchema: name) else { throw VerificationError.unknownSchema(name) }
        return set
      }
    await turn.wait()
    defer { turn.signal() }
    let started = Date()
    var findings: [Finding] = []
    var results: [ComponentResult] = []
    func timed(_ name: String, _ body: () async throws -> (findings: [Finding], note: String)) async {
      let clock = ContinuousClock()
      let start = clock.now
      var found: [Finding] = []
      var note = ""
      do {
        (found, note) = try await body()
      } catch {
        note = "not checked: \(error.databaseMessage)"
      }
      let elapsed = clock.now - start
      findings += found
      results.append(
        ComponentResult(
          component: name, status: Overall.status(of: found, skipped: !note.isEmpty), issues: found.count,
          durationMs: Int(elapsed.milliseconds.rounded()), note: note))
    }
    let wanted = component.map { [$0] } ?? Self.components
    for name in wanted {
      switch name {
      case "ledger", "schema":
        for set in sets {
          await timed("\(name):\(set.schema)") { name == "ledger" ? try await ledger(set) : try await drift(set) }
        }
      case "data":
        await timed("data") { try await readOnly { try await self.data($0, component: "data") } }
      case "sync":
        await timed("sync") { try await readOnly { try await self.data($0, component: "sync") } }
      default:
        await timed("health") { (await HealthCheck(clients: health, slow: settings.slowHealth).run(), "") }
      }
    }
    let skipped = results.contains { !$0.note.isEmpty }
    let status = Overall.status(of: findings, skipped: skipped)
    let report = StoredReport(
      id: UUID(), kind: component ?? "full", startedAt: started, finishedAt: Date(), overallStatus: status, components: results,
      findings: findings, summary: Overall.summary(status: status, findings: findings, components: results))
    try await store.save(report)
    Counter(label: "herald_verification_runs_total", dimensions: [("status", status)]).increment()
    await Alerts(store: store, settings: settings, logger: logger).raise()
    return report
  }

  /// Runs `body` in a read-only transaction with short timeouts: verification never writes what
  /// it checks and never waits long for a lock.
  func readOnly<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
    try await client.withConnection { connection in
      try await connection.withTransaction(logger: logger) { connection in
        try await connection.query("SET TRANSACTION READ ONLY", logger: logger)
        try await self.limit(connection)
        return try await body(connection)
      }
    }
  }

  /// The transaction's timeouts (SET LOCAL: they end with it, and never stay on a pooled connection).
  private func limit(_ connection: PostgresConnection) async throws {
    try await Self.limit(lock: settings.lockTimeout, statement: settings.statementTimeout, on: connection, logger: logger)
  }

  static func limit(lock: Duration, statement: Duration, on connection: PostgresConnection, logger: Logger) async throws {
    try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(milliseconds(statement))"), logger: logger)
    try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = \(milliseconds(lock))"), logger: logger)
  }

  /// At least 1 ms (0 would mean no timeout at all).
  static func milliseconds(_ duration: Duration) -> Int {
    max(1, Int(duration.milliseconds.rounded(.up)))
  }

  /// The data checks of `component`, each under a savepoint of its own: one that cannot run (a
  /// table or column it reads is missing, which the schema check reports) is noted as not
  /// checked, and the others still run.
  func data(_ connection: PostgresConnection, component: String) async throws -> (findings: [Finding], note: String) {
    var findings: [Finding] = []
    var failed: [String] = []
    for check in DataChecks.all(stuckAfter: settings.stuckAfter) where check.component == component {
      try await connection.query("SAVEPOINT data_check", logger: logger)
      do {
        findings += try await check.run(connection: connection, logger: logger)
        try await connection.query("RELEASE SAVEPOINT data_check", logger: logger)
      } catch let error as PSQLError where error.serverInfo != nil {
        try await connection.query("ROLLBACK TO SAVEPOINT data_check", logger: logger)
        failed.append("\(check.check) (\(error.databaseMessage))")
      }
    }
    return (findings, failed.isEmpty ? "" : "not checked: " + failed.joined(separator: "; "))
  }

  func ledger(_ set: MigrationSet) async throws -> (findings: [Finding], note: String) {
    try await readOnly { connection in
      let ledger = try await MigrationRunner.ledger(schema: set.schema, connection: connection, logger: logger)
      var duplicates: [(name: String, versions: [Int])] = []
      if ledger != nil {
        for try await (name, versions) in try await connection.query(
          """
          SELECT name, array_agg(version ORDER BY version) FROM \(unescaped: set.schema).schema_migrations
          GROUP BY name HAVING count(*) > 1 ORDER BY name
          """, logger: logger
        ).decode((String, [Int]).self) {
          duplicates.append((name, versions))
        }
      }
      return (LedgerFindings.of(SchemaLedgerReport(schema: set.schema, ledger: ledger, known: set), duplicates: duplicates), "")
    }
  }

  /// Drift of one schema against the migrations it has applied (pending ones are the ledger's
  /// business), holding its migration lock — for the transaction only, so it cannot outlive the
  /// check — so a deploy in progress is not reported as drift.
  func drift(_ set: MigrationSet) async throws -> (findings: [Finding], note: String) {
    let key = MigrationRunner.lockKey(schema: set.schema)
    let (live, applied, note): (CatalogSnapshot?, Int, String) = try await readOnly { connection in
      let exists =
        try await connection.query("SELECT to_regnamespace(\(set.schema)) IS NOT NULL", logger: logger)
        .collect().first?.decode(Bool.self) ?? false
      guard exists else { return (nil, 0, "schema \(set.schema) does not exist (see its ledger)") }
      let locked =
        try await connection.query("SELECT pg_try_advisory_xact_lock(hashtext(\(key)))", logger: logger)
        .collect().first?.decode(Bool.self) ?? false
      guard locked else { return (nil, 0, "a migration of \(set.schema) is in progress: drift not checked") }
      guard let applied = try await Self.appliedPrefix(set, connection: connection, logger: logger) else {
        return (nil, 0, "schema \(set.schema) has no migration ledger: drift not checked (see its ledger)")
      }
      return (try await CatalogSnapshot.read(schema: set.schema, connection: connection, logger: logger), applied, "")
    }
    guard let live else { return ([], note) }
    let expected = try await expectedCatalog(set, upTo: applied)
    let pending = set.migrations.count - applied
    return (
      DriftCheck.compare(schema: set.schema, live: live, expected: expected),
      pending == 0 ? "" : "compared with the schema as of migration \(applied); \(pending) migration(s) pending (see its ledger)"
    )
  }

  /// Runs scheduled verifications until graceful shutdown.
  package func runSchedule() async {
    guard settings.interval > .zero else { return }
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        let report = try await run(component: nil)
        logger.info("verification", metadata: ["status": "\(report.overallStatus)", "issues": "\(report.findings.count)"])
      } catch {
        logger.error("scheduled verification failed; will retry", metadata: ["error": "\(error.databaseMessage)"])
      }
      await BackgroundWorker.pause(settings.interval)
    }
  }
}

/// A FIFO lock for async code.
final class AsyncSemaphore: Sendable {
  private let state = Mutex((held: false, waiters: [CheckedContinuation<Void, Never>]()))

  func wait() async {
    await withCheckedContinuation { continuation in
      let resumeNow = state.withLock { state in
        if !state.held {
          state.held = true
          return true
        }
        state.waiters.append(continuation)
        return false
      }
      if resumeNow { continuation.resume() }
    }
  }

  func signal() {
    let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
      if state.waiters.isEmpty {
        state.held = false
        return nil
      }
      return state.waiters.removeFirst()
    }
    next?.resume()
  }
}

/// Alerts by severity threshold (SPEC §6), one per fingerprint until it is resolved.
struct Alerts: Sendable {
  let store: VerificationStore
  let settings: VerificationSettings
  let logger: Logger

  func raise() async {
    do {
      for alert in try await store.dueAlerts(thresholds: settings.thresholds) {
        // Claimed first, so two replicas never send the same alert.
        guard try await store.claimAlert(alert.fingerprint) else { continue }
        var delivered = false
        var error = ""
        if let webhook = settings.alertWebhook {
          (delivered, error) = await send(alert.finding, occurrences: alert.occurrences, to: webhook)
        } else {
          error = "HERALD_VERIFICATION_ALERT_WEBHOOK is not set: recorded only"
        }
        // A failed delivery is tried again at the next verification.
        try await store.recordAlert(alert, delivered: delivered, error: error, retry: !delivered && settings.alertWebhook != nil)
      }
    } catch {
      logger.error("raising alerts failed", metadata: ["error": "\(error.databaseMessage)"])
    }
  }

  func send(_ finding: Finding, occurrences: Int64, to webhook: String) async -> (Bool, String) {
    let payload: [String: JSONValue] = [
      "fingerprint": .string(finding.fingerprint), "severity": .string(finding.severity.rawValue),
      "category": .string(finding.category.rawValue), "check": .string(finding.check), "description": .string(finding.description),
      "affected_object": .string(finding.affectedObject), "count": .number(Double(finding.count)),
      "occurrences": .number(Double(occurrences)), "suggested_repair": .string(finding.suggestedRepair),
    ]
    do {
      var request = HTTPClientRequest(url: webhook)
      request.method = .POST
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(JSONValue.object(payload))))
      let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
      guard (200..<300).contains(response.status.code) else { return (false, "the webhook answered \(response.status.code)") }
      return (true, "")
    } catch {
      return (false, "the webhook could not be reached: \(error)")
    }
  }
}
