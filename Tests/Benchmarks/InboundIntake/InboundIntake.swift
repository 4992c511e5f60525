import AsyncHTTPClient
import Benchmark
import Foundation
import HTTPTypes
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldGateway
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import Prometheus
import SwiftProtobuf

/// Inbound SMS as a provider posts them (issue #20): form POSTs signed with X-Twilio-Signature to
/// the gateway's `/v1/inbound/sms/{provider}` (a real HTTP server on loopback), `concurrency` at a
/// time over as many keep-alive connections (async-http-client, as a provider's client would
/// hold them); the delivery service verifies, stores, matches and acts on each (STOP suppresses the
/// number and queues a confirmation, HELP queues the help text); then the campaign service's
/// inbound feed takes them all in (senders linked to their subscribers, keywords turned into
/// consent). Everything runs in this process against a throwaway PostgreSQL. Beside it, in the
/// same run, the ceiling: PostgreSQL alone inserting the same rows one statement each at the same
/// concurrency, with nothing in between. Phase lines: `phase <name> ...`.
let benchmarks: @Sendable () -> Void = {
  let sizes = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_SIZES"].map { $0.split(separator: ",").compactMap { Int($0) } }
  for size in sizes ?? [10_000] {
    Benchmark(
      "Take in \(size / 1000)k inbound SMS",
      configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
    ) { benchmark in
      try await intake(size, benchmark: benchmark)
    }
  }
}

let adminKey = "hrld_benchmark-admin-key-0123456789"
let authToken = "benchmark-auth-token"
let concurrency = 32

/// Message n: from its own number; every 10th a STOP, every 20th a HELP, the rest replies.
func fields(_ n: Int) -> [(String, String)] {
  let body = n % 10 == 0 ? "STOP" : n % 20 == 5 ? "help" : "Thanks, see you on Friday \(n)"
  return [("From", phone(n)), ("To", "+15550001111"), ("Body", body), ("MessageSid", "SM\(n)"), ("NumMedia", "0")]
}

func phone(_ n: Int) -> String { "+1415\(String(format: "%07d", n))" }

func form(_ fields: [(String, String)]) -> String {
  var allowed = CharacterSet.alphanumerics
  allowed.insert(charactersIn: "-._~")
  return fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
}

func intake(_ size: Int, benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  nonisolated(unsafe) let benchmark = benchmark
  let logger = {
    var logger = Logger(label: "benchmark")
    logger.logLevel = .warning
    return logger
  }()
  let url = try await TestPostgres.shared.makeDatabase()
  var deliverySettings = DeliverySettings()
  deliverySettings.secrets = testSecrets
  var deliveryDefinition = DeliveryDefinition.make(settings: deliverySettings)
  deliveryDefinition.readinessDependencies = []
  deliveryDefinition.makeWorkers = { _ in [] }
  var campaignDefinition = CampaignDefinition.definition
  campaignDefinition.readinessDependencies = []
  campaignDefinition.makeWorkers = { _ in [] }
  try await withRunningService(deliveryDefinition, databaseURL: url) { deliveryPort, _ in
    try await withRunningService(campaignDefinition, databaseURL: url) { campaignPort, _ in
      var services = Dictionary(uniqueKeysWithValues: ServiceCatalog.backEnds.map { ($0, ServiceAddress(host: "127.0.0.1", port: 1)) })
      services["campaign"] = ServiceAddress(host: "127.0.0.1", port: campaignPort)
      services["delivery"] = ServiceAddress(host: "127.0.0.1", port: deliveryPort)
      let configuration = GatewayConfiguration(
        port: 0, database: try DatabaseConfiguration(url: url), services: services, statusTimeout: .seconds(3), adminKey: adminKey)
      let app = try buildGateway(configuration: configuration, registry: PrometheusCollectorRegistry(), announceKey: { _ in })
      try await app.test(.live) { client in
        try await withClient(port: deliveryPort) { deliveryClient in
          try await withDatabase(url) { database in
            let calibrateStart = ContinuousClock.now
            try await database.query("SELECT sum(g) FROM generate_series(1, 20000000) g", logger: logger)
            benchmarkPhase("calibrate \(String(format: "%.2f", seconds(since: calibrateStart))) (sum of 20M integers)")
            _ = try await Herald_Delivery_V1_DeliveryService.Client(wrapping: deliveryClient).putProvider(
              .with {
                $0.name = "sms-main"
                $0.channel = .sms
                $0.webhookSecret = authToken
                $0.httpSms = .with {
                  $0.url = "http://127.0.0.1:9/unused"
                  $0.from = "+15550001111"
                }
              })
            // Half the senders are subscribers (linked by their number).
            try await database.query(
              """
              INSERT INTO campaign.subscribers (phone, sms_subscribed, sms_consent_source, sms_consented_at)
              SELECT '+1415' || lpad(g::text, 7, '0'), true, 'benchmark', now() FROM generate_series(0, \(size - 1), 2) g
              """, logger: logger)
            try await database.query("VACUUM ANALYZE", logger: logger)

            let ceiling = try await ceilingRowsPerSecond(size, database: database, logger: logger)

            guard let port = client.port else { throw BenchmarkFailure("the gateway has no port") }
            let bodies = (0..<size).map { n in
              let fields = fields(n)
              return (
                form(fields),
                InboundPayload.twilioSignature(key: authToken, url: "http://localhost:\(port)/v1/inbound/sms/sms-main", fields: fields)
              )
            }
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let cpuBefore = cpuSeconds()
            benchmark.startMeasurement()
            let start = ContinuousClock.now
            let refused = try await withThrowingTaskGroup(of: Int.self) { group in
              for lane in 0..<concurrency {
                group.addTask {
                  var refused = 0
                  for n in stride(from: lane, to: size, by: concurrency) {
                    var request = HTTPClientRequest(url: "http://localhost:\(port)/v1/inbound/sms/sms-main")
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                    request.headers.add(name: "X-Twilio-Signature", value: bodies[n].1)
                    request.body = .bytes(ByteBuffer(string: bodies[n].0))
                    let response = try await http.execute(request, timeout: .seconds(30))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    if response.status != .ok { refused += 1 }
                  }
                  return refused
                }
              }
              return try await group.reduce(0, +)
            }
            let accepted = seconds(since: start)
            try await http.shutdown()
            let consumer = InboundFeedConsumer(
              client: database, source: DeliverySink(client: deliveryClient), logger: logger)
            var applied = 0
            while applied < size {
              let batch = try await consumer.pollOnce()
              applied += batch
              if batch == 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            let processed = seconds(since: start)
            benchmark.stopMeasurement()
            let cpuAfter = cpuSeconds()
            guard refused == 0 else { throw BenchmarkFailure("\(refused) inbound messages were refused") }
            let counts =
              try await database.query(
                """
                SELECT (SELECT count(*) FROM delivery.inbound_messages),
                  (SELECT count(*) FROM delivery.inbound_messages WHERE subscriber_id IS NOT NULL),
                  (SELECT count(*) FROM delivery.suppressions WHERE reason = 'sms_keyword'),
                  (SELECT count(*) FROM delivery.messages WHERE compliance),
                  (SELECT count(*) FROM campaign.subscribers WHERE NOT sms_subscribed)
                """, logger: logger
              ).decode((Int64, Int64, Int64, Int64, Int64).self).elements().first ?? (Int64(0), Int64(0), Int64(0), Int64(0), Int64(0))
            let stops = Int64((0..<size).count { $0 % 10 == 0 })
            let helps = Int64((0..<size).count { $0 % 20 == 5 })
            guard counts.0 == Int64(size), counts.1 == Int64(size / 2), counts.2 == stops, counts.3 == stops + helps, counts.4 == stops
            else {
              throw BenchmarkFailure("stored, linked, suppressed, answered, withdrawn: \(counts)")
            }
            let acceptedRate = Double(size) / accepted
            let processedRate = Double(size) / processed
            benchmarkPhase(
              "inbound messages=\(size) concurrency=\(concurrency) accepted_seconds=\(String(format: "%.2f", accepted))"
                + " accepted_per_second=\(Int(acceptedRate)) processed_seconds=\(String(format: "%.2f", processed))"
                + " processed_per_second=\(Int(processedRate)) ceiling_rows_per_second=\(Int(ceiling))"
                + " ratio=\(String(format: "%.2f", acceptedRate / ceiling))"
                + " cpu_herald=\(String(format: "%.2f", cpuAfter.own - cpuBefore.own))"
                + " cpu_postgres=\(String(format: "%.2f", cpuAfter.postgres - cpuBefore.postgres))")
            guard processedRate >= 1000 else {
              throw BenchmarkFailure("processed \(Int(processedRate)) inbound messages a second; the goal is 1,000")
            }
          }
        }
      }
    }
  }
}

/// The same rows written by PostgreSQL alone into a copy of the table (its indexes and identity
/// included): one INSERT each, `concurrency` at a time over the pool, no checks, no network hop
/// but the database's.
func ceilingRowsPerSecond(_ size: Int, database: PostgresClient, logger: Logger) async throws -> Double {
  try await database.query("CREATE TABLE delivery.ceiling_inbound (LIKE delivery.inbound_messages INCLUDING ALL)", logger: logger)
  let start = ContinuousClock.now
  try await withThrowingTaskGroup(of: Void.self) { group in
    for lane in 0..<concurrency {
      group.addTask {
        for n in stride(from: lane, to: size, by: concurrency) {
          let fields = fields(n)
          try await database.query(
            """
            INSERT INTO delivery.ceiling_inbound (provider, provider_message_id, channel, sender, recipient, body, action)
            VALUES ('ceiling', \(fields[3].1), 'sms', \(fields[0].1), \(fields[1].1), \(fields[2].1), 'none')
            ON CONFLICT (provider, provider_message_id) DO NOTHING
            """, logger: logger)
        }
      }
    }
    try await group.waitForAll()
  }
  let elapsed = seconds(since: start)
  try await database.query("DROP TABLE delivery.ceiling_inbound", logger: logger)
  return Double(size) / elapsed
}
