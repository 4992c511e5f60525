import Foundation
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldRateLimit
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import Testing

/// The real `delivery` executable, killed with SIGKILL mid-run and started again (SPEC §9).
@Suite(.timeLimit(.minutes(5))) struct DeliveryCrashTests {
  @Test func tenThousandMessagesAreDeliveredOnceAcrossAKillNine() async throws {
    let executable = try builtExecutable("delivery")
    let url = try await TestPostgres.shared.makeDatabase()
    let logger = Logger(label: "test.crash")
    try await withSMTPSink { sink in
      try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { rateLimitPort, _ async throws in
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-crash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try """
        {"providers": [{"name": "smtp-sink", "channel": "CHANNEL_EMAIL",
          "smtp": {"host": "127.0.0.1", "port": \(sink.port), "fromAddress": "news@herald.test", "tls": "TLS_MODE_NONE", "maxConnections": 4}}]}
        """.write(toFile: folder + "/providers.json", atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["HERALD_DATABASE_URL"] = url
        environment["HERALD_PORT"] = String(try freePort())
        environment["HERALD_RATELIMIT_ADDR"] = "127.0.0.1:\(rateLimitPort)"
        environment["HERALD_DELIVERY_PROVIDERS_FILE"] = folder + "/providers.json"
        environment["HERALD_DELIVERY_LEASE"] = "2s"
        environment["HERALD_DELIVERY_RESEND_AMBIGUOUS"] = "true"
        environment["HERALD_DELIVERY_WORKERS"] = "2"
        environment["HERALD_DELIVERY_BATCH_SIZE"] = "50"
        environment["HERALD_DELIVERY_CONCURRENCY"] = "4"
        environment["HERALD_LOG_LEVEL"] = "warning"

        try await withDatabase(url) { database async throws in
          // Start once so the schema exists, then queue 10,000 messages through the real enqueue.
          let first = try SpawnedProcess(executable, [], output: folder + "/delivery.log", environment: environment)
          var killed = false
          defer { if !killed { first.kill() } }
          try await eventually(timeout: .seconds(30), "the delivery schema") {
            let rows = try? await database.query("SELECT to_regclass('delivery.spend_caps') IS NOT NULL", logger: logger)
              .decode(Bool.self).elements()
            return rows?.first == true
          }
          let store = DeliveryStore(client: database, logger: logger)
          for chunk in stride(from: 0, to: 10_000, by: 1_000) {
            _ = try await store.enqueue(
              (chunk..<(chunk + 1_000)).map { n in
                QueuedMessage(
                  idempotencyKey: "crash:\(n)", channel: "email", recipient: "user\(n)@example.com", subject: "Hello \(n)",
                  body: "Message \(n)", campaignID: nil, subscriberID: nil, notBefore: nil)
              })
          }
          try await eventually(timeout: .seconds(120), "a fifth of the messages to arrive") { sink.messages.count >= 2_000 }
          first.kill()
          killed = true
          let atKill = sink.messages.count
          #expect(atKill < 10_000, "the kill came too late to cut the run")

          let second = try SpawnedProcess(executable, [], output: folder + "/delivery.log", environment: environment)
          defer { second.kill() }
          try await eventually(timeout: .seconds(180), "every message to be sent") {
            let rows = try await database.query(
              "SELECT count(*) FILTER (WHERE status = 'sent')::int FROM delivery.messages", logger: logger
            ).decode(Int.self).elements()
            return rows.first == 10_000
          }
          let received = sink.messages.map(\.key)
          var seen: [String: Int] = [:]
          for key in received { seen[key, default: 0] += 1 }
          #expect(seen.count == 10_000, "every message arrived")
          let twice = Set(seen.filter { $0.value > 1 }.keys)
          let ambiguous = Set(
            try await database.query("SELECT idempotency_key FROM delivery.messages WHERE ambiguous", logger: logger)
              .decode(String.self).elements())
          // Only a send that was cut off mid-exchange can arrive twice, and each such is counted.
          #expect(twice.isSubset(of: ambiguous), "duplicates outside the ambiguous set: \(twice.subtracting(ambiguous).sorted().prefix(5))")
          #expect(ambiguous.count <= 2 * 50, "at most the two loops' leased batches were in flight")
          print("kill -9 run: \(atKill) delivered before the kill, \(ambiguous.count) ambiguous sends resent, \(twice.count) arrived twice")
          let log = (try? String(contentsOfFile: folder + "/delivery.log", encoding: .utf8)) ?? ""
          #expect(log.contains("lease expired"), "the restart reported the cut-off sends")
        }
      }
    }
  }
}
