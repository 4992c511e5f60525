import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import HeraldVerification
import Logging
import PostgresNIO
import Synchronization

/// A full verification (issue #7) of a database with 1,000,000 subscribers (and 200,000 delivery
/// messages), every service running in this process, while a writer keeps updating subscribers
/// and queueing messages as the services would. Written down: the verification's time, and what
/// the writer saw meanwhile — its slowest write and how often a lock made anyone wait
/// (pg_locks sampled every 50 ms).
let benchmarks: @Sendable () -> Void = {
  Benchmark(
    "Full verification of 1M subscribers",
    configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(900), maxIterations: 1)
  ) { benchmark in
    try await verifyMillion(benchmark: benchmark)
  }
}

func verifyMillion(benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  var logger = Logger(label: "benchmark")
  logger.logLevel = .warning
  let url = try await TestPostgres.shared.makeDatabase()
  func local(_ port: Int) -> ServiceAddress { ServiceAddress(host: "127.0.0.1", port: port) }
  func alone(_ definition: ServiceDefinition) -> ServiceDefinition {
    var definition = definition
    definition.readinessDependencies = []
    definition.makeWorkers = { _ in [] }
    return definition
  }
  try await withRunningService(alone(RateLimitDefinition.definition), databaseURL: url) { ratelimit, _ in
    try await withRunningService(alone(DeliveryDefinition.definition), databaseURL: url) { delivery, _ in
      try await withRunningService(alone(CampaignDefinition.definition), databaseURL: url) { campaign, _ in
        try await withRunningService(alone(SyncDefinition.definition), databaseURL: url, dependencies: ["campaign": local(campaign)]) {
          sync, _ in
          var verification = VerificationDefinition.definition
          verification.readinessDependencies = []
          let dependencies = ["campaign": local(campaign), "delivery": local(delivery), "ratelimit": local(ratelimit), "sync": local(sync)]
          try await withDatabase(url) { database in
            try await MigrationRunner(logger: logger).migrate(HeraldMigrations.gateway, client: database)
          }
          try await withRunningService(verification, databaseURL: url, dependencies: dependencies) { port, _ in
            try await withClient(port: port) { client in
              try await withDatabase(url) { database in
                try await measure(
                  client: Herald_Verification_V1_VerificationService.Client(wrapping: client), database: database, logger: logger,
                  benchmark: benchmark)
              }
            }
          }
        }
      }
    }
  }
}

func measure(
  client: Herald_Verification_V1_VerificationService.Client<HTTP2ClientTransport.Posix>, database: PostgresClient, logger: Logger,
  benchmark: Benchmark
) async throws {
  let seedStart = ContinuousClock.now
  let list = UUID()
  try await database.query("INSERT INTO campaign.lists (id, name) VALUES (\(list), 'everyone')", logger: logger)
  try await seedSubscribers(1_000_000, list: list, database: database)
  try await database.query(
    """
    INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, subscriber_id, status)
    SELECT 'seed:' || g, 'email', 'user' || g || '@example.com', 'hi', NULL, CASE WHEN g % 4 = 0 THEN 'queued' ELSE 'sent' END
    FROM generate_series(1, 200000) AS g
    """, logger: logger)
  for table in ["campaign.subscribers", "campaign.list_members", "delivery.messages"] {
    try await database.query(PostgresQuery(unsafeSQL: "VACUUM ANALYZE \(table)"), logger: logger)
  }
  benchmarkPhase("seed \(String(format: "%.2f", seconds(since: seedStart))) subscribers=1000000 messages=200000")

  let done = StopFlag()
  // The services' work meanwhile: single-row updates and inserts, each its own transaction.
  let writer = Task { () -> (writes: Int, slowest: Double, latencies: [Double]) in
    var latencies: [Double] = []
    var n = 0
    while !done.isSet {
      n += 1
      let start = ContinuousClock.now
      try await database.query(
        "UPDATE campaign.subscribers SET first_name = 'Writer' || \(n), updated_at = now() WHERE email = \("user\(n * 7919 % 1_000_000 + 1)@example.com")",
        logger: logger)
      try await database.query(
        "INSERT INTO delivery.messages (idempotency_key, channel, recipient, body) VALUES (\("writer:\(n)"), 'email', 'w@example.com', 'hi')",
        logger: logger)
      latencies.append(seconds(since: start) * 1000)
    }
    return (n, latencies.max() ?? 0, latencies)
  }
  let watcher = Task { () -> (samples: Int, waiting: Int) in
    var samples = 0
    var waiting = 0
    while !done.isSet {
      samples += 1
      let blocked =
        try await database.query("SELECT count(*)::int FROM pg_locks WHERE NOT granted", logger: logger)
        .decode(Int.self).elements().first ?? 0
      if blocked > 0 { waiting += 1 }
      try await Task.sleep(for: .milliseconds(50))
    }
    return (samples, waiting)
  }

  benchmark.startMeasurement()
  let start = ContinuousClock.now
  let report = try await client.runVerification(.init(), options: .timeout(.seconds(900)))
  let elapsed = seconds(since: start)
  benchmark.stopMeasurement()
  done.set()
  let written = try await writer.value
  let watched = try await watcher.value
  let sorted = written.latencies.sorted()
  let p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
  benchmarkPhase("verify \(String(format: "%.2f", elapsed)) status=\(report.overallStatus) issues=\(report.issues.count)")
  for component in report.components {
    benchmarkPhase("component \(component.component) \(component.durationMs) ms \(component.note)")
  }
  benchmarkPhase(
    "writer writes=\(written.writes) p99_ms=\(String(format: "%.1f", p99)) max_ms=\(String(format: "%.1f", written.slowest)) lock_wait_samples=\(watched.waiting)/\(watched.samples)"
  )
  for issue in report.issues { benchmarkPhase("issue \(issue.check) \(issue.affectedObject): \(issue.description_p)") }
}

final class StopFlag: Sendable {
  private let value = Atomic<Bool>(false)
  var isSet: Bool { value.load(ordering: .relaxed) }
  func set() { value.store(true, ordering: .relaxed) }
}
