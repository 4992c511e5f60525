import Foundation
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldRateLimit
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import Synchronization
import Testing

/// The real `delivery` executable, killed with SIGKILL three times mid-run and started again
/// each time (SPEC §3, §9): no recipient is left in limbo, and only a send that was in flight
/// at a kill can end `unknown`.
@Suite(.serialized, .timeLimit(.minutes(10))) struct DeliveryCrashTests {
  static let total = 10_000
  static let (workers, concurrency) = (2, 4)
  /// Received counts at which the process is killed.
  static let killsAt = [2_000, 5_000, 8_000]
  /// What can be in flight at one kill: every loop's sends.
  static let inFlightPerKill = workers * concurrency

  /// SMTP, which does not drop a second copy: a send that began before a kill is left `unknown`
  /// (resending is off by default), every other message arrives exactly once.
  @Test func smtpRecipientsGetExactlyOneMessageAcrossThreeKills() async throws {
    try await withSMTPSink { sink in
      let run = try await runKilledThreeTimes(
        providers: """
          {"providers": [{"name": "smtp-sink", "channel": "CHANNEL_EMAIL",
            "smtp": {"host": "127.0.0.1", "port": \(sink.port), "fromAddress": "news@herald.test", "tls": "TLS_MODE_NONE",
              "maxConnections": \(Self.inFlightPerKill)}}]}
          """,
        received: { Set(sink.messages.map(\.key)).count })
      var arrivals: [String: Int] = [:]
      for message in sink.messages { arrivals[message.key, default: 0] += 1 }
      let duplicates = arrivals.filter { $0.value > 1 }.count
      let lost = (0..<Self.total).map { "crash:\($0)" }.filter { arrivals[$0] == nil && !run.unknown.contains($0) }
      print(
        "SMTP, three kill -9s: \(arrivals.count) received, \(run.unknown.count) unknown (of them \(run.unknown.filter { arrivals[$0] != nil }.count) received), \(duplicates) duplicates, \(lost.count) lost; reclaim: \(run.reclaimLog)"
      )
      #expect(duplicates == 0, "messages received twice: \(arrivals.filter { $0.value > 1 }.keys.sorted().prefix(5))")
      #expect(lost.isEmpty, "recipients who got nothing and are not unknown: \(lost.prefix(5))")
      #expect(run.unknown.count <= Self.killsAt.count * Self.inFlightPerKill, "unknown holds more than the sends in flight")
      #expect(run.statuses["sent", default: 0] + run.unknown.count == Self.total, "\(run.statuses)")
      #expect(Set(run.ambiguous) == run.unknown, "only the unknown sends are ambiguous")
    }
  }

  /// A webhook provider, which drops a second request with the same Idempotency-Key (as the
  /// providers that honour the key do): a send that began before a kill is sent again with the
  /// same key; no message is lost, none is left unknown, none is delivered twice.
  @Test func webhookRecipientsGetExactlyOneMessageAcrossThreeKills() async throws {
    let delivered = Mutex<[String: Int]>([:])
    try await withHTTPSink(reply: { request in
      let key = request.headers["Idempotency-Key"] ?? request.headers["idempotency-key"] ?? ""
      delivered.withLock { $0[key, default: 0] += 1 }
      return SinkReply(body: #"{"id": "hook-\#(key)"}"#)
    }) { port, _ in
      let run = try await runKilledThreeTimes(
        providers: """
          {"providers": [{"name": "hook", "channel": "CHANNEL_EMAIL", "webhook": {"url": "http://127.0.0.1:\(port)/send"}}]}
          """,
        received: { delivered.withLock { $0.count } })
      let requests = delivered.withLock { $0 }
      let repeated = Set(requests.filter { $0.value > 1 }.keys)
      print(
        "webhook, three kill -9s: \(requests.count) delivered, \(run.unknown.count) unknown, \(repeated.count) sent again and dropped by the key, 0 duplicates delivered; reclaim: \(run.reclaimLog)"
      )
      #expect(requests.count == Self.total, "every message reached the provider")
      #expect(run.statuses == ["sent": Self.total])
      #expect(run.unknown.isEmpty)
      // A second request comes only for a send cut off by a kill.
      #expect(
        repeated.isSubset(of: Set(run.ambiguous)),
        "repeated outside the cut-off sends: \(repeated.subtracting(run.ambiguous).sorted().prefix(5))")
      #expect(run.ambiguous.count <= Self.killsAt.count * Self.inFlightPerKill)
    }
  }

  struct Run: Sendable {
    var statuses: [String: Int]
    var unknown: Set<String>
    var ambiguous: [String]
    var reclaimLog: String
  }

  /// Queues `total` messages through the real enqueue, runs the real delivery process with
  /// `providers`, kills it with SIGKILL each time `received()` reaches a count of `killsAt`
  /// (starting it again at once), and waits until no message is queued or sending.
  func runKilledThreeTimes(providers: String, received: @escaping @Sendable () -> Int) async throws -> Run {
    let executable = try builtExecutable("delivery")
    let url = try await TestPostgres.shared.makeDatabase()
    let logger = Logger(label: "test.crash")
    return try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { rateLimitPort, _ async throws in
      let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-crash-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: folder) }
      try providers.write(toFile: folder + "/providers.json", atomically: true, encoding: .utf8)
      var environment = ProcessInfo.processInfo.environment
      environment["HERALD_DATABASE_URL"] = url
      environment["HERALD_PORT"] = String(try freePort())
      environment["HERALD_RATELIMIT_ADDR"] = "127.0.0.1:\(rateLimitPort)"
      environment["HERALD_DELIVERY_PROVIDERS_FILE"] = folder + "/providers.json"
      environment["HERALD_DELIVERY_LEASE"] = "2s"
      environment["HERALD_DELIVERY_WORKERS"] = String(Self.workers)
      environment["HERALD_DELIVERY_BATCH_SIZE"] = "50"
      environment["HERALD_DELIVERY_CONCURRENCY"] = String(Self.concurrency)
      environment["HERALD_LOG_LEVEL"] = "warning"
      let log = folder + "/delivery.log"

      return try await withDatabase(url) { database async throws in
        var process = try SpawnedProcess(executable, [], output: log, environment: environment)
        defer { process.kill() }
        // Started once so that the schema exists; then 10,000 messages through the real enqueue.
        try await eventually(timeout: .seconds(60), "the delivery schema") {
          let rows = try? await database.query("SELECT to_regclass('delivery.send_journal') IS NOT NULL", logger: logger)
            .decode(Bool.self).elements()
          return rows?.first == true
        }
        let store = DeliveryStore(client: database, logger: logger)
        for chunk in stride(from: 0, to: Self.total, by: 1_000) {
          _ = try await store.enqueue(
            (chunk..<(chunk + 1_000)).map { n in
              QueuedMessage(
                idempotencyKey: "crash:\(n)", channel: "email", recipient: "user\(n)@example.com", subject: "Hello \(n)",
                body: "Message \(n)", campaignID: nil, subscriberID: nil, notBefore: nil)
            })
        }
        for count in Self.killsAt {
          try await eventually(timeout: .seconds(180), "\(count) messages to arrive") { received() >= count }
          process.kill()
          #expect(received() < Self.total, "the kill at \(count) came too late to cut the run")
          process = try SpawnedProcess(executable, [], output: log, environment: environment)
        }
        try await eventually(timeout: .seconds(240), "every message to be settled (none queued or sending)") {
          let rows = try await database.query(
            "SELECT count(*)::int FROM delivery.messages WHERE status IN ('queued', 'sending')", logger: logger
          ).decode(Int.self).elements()
          return rows.first == 0
        }
        var statuses: [String: Int] = [:]
        for try await (status, count) in try await database.query(
          "SELECT status, count(*)::int FROM delivery.messages GROUP BY status", logger: logger
        ).decode((String, Int).self) {
          statuses[status] = count
        }
        let unknown = Set(
          try await database.query("SELECT idempotency_key FROM delivery.messages WHERE status = 'unknown'", logger: logger)
            .decode(String.self).elements())
        let ambiguous = try await database.query(
          "SELECT idempotency_key FROM delivery.messages WHERE ambiguous", logger: logger
        ).decode(String.self).elements()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let reclaims = output.split(separator: "\n").filter { $0.contains("taken back (lease expired)") }
        #expect(!reclaims.isEmpty, "the restarts reported the messages they took back:\n\(output.suffix(2000))")
        return Run(
          statuses: statuses, unknown: unknown, ambiguous: ambiguous,
          reclaimLog: reclaims.map { line in
            line.split(separator: " ").filter { $0.hasPrefix("never_sent") || $0.hasPrefix("maybe_sent") }.joined(separator: " ")
          }.joined(separator: "; "))
      }
    }
  }
}
