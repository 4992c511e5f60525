import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf

/// Expanding and enqueueing a campaign audience (issue #3): `SendCampaign` expands the audience
/// into the outbox in one statement, then the relay hands every entry to the delivery service's
/// queue in batches over gRPC. Both services run in this process against a throwaway PostgreSQL,
/// so peak resident memory is theirs (PostgreSQL's own memory is not counted). The audience is
/// seeded before measuring. Phase times are written as `phase <name> <seconds>` lines.
let benchmarks: @Sendable () -> Void = {
  // HERALD_BENCHMARK_SIZES (comma-separated) picks other audience sizes, e.g. for profiling.
  let sizes = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_SIZES"].map { $0.split(separator: ",").compactMap { Int($0) } }
  for size in sizes ?? [100_000, 1_000_000] {
    Benchmark(
      "Expand and enqueue \(size / 1000)k subscribers",
      configuration: .init(
        metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(900), maxIterations: 1)
    ) { benchmark in
      try await expandAndEnqueue(size, benchmark: benchmark)
    }
  }
}

func expandAndEnqueue(_ size: Int, benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  var logger = Logger(label: "benchmark")
  logger.logLevel = .warning
  let url = try await TestPostgres.shared.makeDatabase()
  // Campaign e-mail is sent with each recipient's signed unsubscribe link, as in production.
  var settings = CampaignSettings()
  settings.secrets = testSecrets
  let links = UnsubscribeLinks(publicURL: settings.publicURL, secrets: testSecrets)
  var campaignDefinition = CampaignDefinition.definition(settings: settings)
  campaignDefinition.readinessDependencies = []
  campaignDefinition.makeWorkers = { _ in [] }
  var deliveryDefinition = DeliveryDefinition.definition
  deliveryDefinition.readinessDependencies = []
  try await withRunningService(deliveryDefinition, databaseURL: url) { deliveryPort, _ in
    try await withRunningService(
      campaignDefinition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
    ) { campaignPort, _ in
      try await withClient(port: campaignPort) { campaignClient in
        try await withClient(port: deliveryPort) { deliveryClient in
          try await withDatabase(url) { database in
            let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: campaignClient)
            let list = try await campaign.createList(.with { $0.name = "everyone" })
            let seedStart = ContinuousClock.now
            try await seedSubscribers(size, list: UUID(uuidString: list.id)!, database: database)
            try await database.query("VACUUM ANALYZE campaign.subscribers", logger: logger)
            try await database.query("VACUUM ANALYZE campaign.list_members", logger: logger)
            benchmarkPhase("seed \(String(format: "%.2f", seconds(since: seedStart)))")
            // The machine's speed varies between runs; a fixed piece of CPU work in PostgreSQL
            // shows how fast it was during this one.
            let calibrateStart = ContinuousClock.now
            try await database.query("SELECT sum(g) FROM generate_series(1, 20000000) g", logger: logger)
            benchmarkPhase("calibrate \(String(format: "%.2f", seconds(since: calibrateStart))) (sum of 20M integers)")
            let template = try await campaign.createTemplate(
              .with {
                $0.name = "news"
                $0.channel = "email"
                $0.subject = "News for {{first_name}}"
                $0.body = "<p>Hello {{first_name}}, you are number {{n}}.</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>"
                $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "n" }, .with { $0.name = "unsubscribe_url" }]
              })
            let created = try await campaign.createCampaign(
              .with {
                $0.name = "benchmark"
                $0.channel = "email"
                $0.listID = list.id
                $0.templateID = template.id
              })

            benchmark.startMeasurement()
            let expandStart = ContinuousClock.now
            let sending = try await campaign.sendCampaign(.with { $0.id = created.id }, options: .timeout(.seconds(600)))
            benchmarkPhase("size \(size)")
            benchmarkPhase(
              "expand \(String(format: "%.2f", seconds(since: expandStart))) outbox=\(sending.counts.outbox) skipped=\(sending.counts.skippedNoConsent)"
            )
            let relayStart = ContinuousClock.now
            // As many relays as a campaign process runs, sharing the outbox.
            try await withThrowingTaskGroup(of: Void.self) { group in
              for _ in 0..<CampaignSettings().relayWorkers {
                group.addTask { [logger] in
                  let relay = OutboxRelay(
                    client: database, sink: DeliverySink(client: deliveryClient), links: links, logger: logger)
                  try await relay.drain()
                }
              }
              try await group.waitForAll()
            }
            benchmarkPhase("relay \(String(format: "%.2f", seconds(since: relayStart)))")
            benchmark.stopMeasurement()

            let queued =
              try await database.query(
                "SELECT count(*) FROM delivery.messages WHERE campaign_id = \(UUID(uuidString: created.id)!)", logger: logger
              ).collect().first?.decode(Int64.self) ?? 0
            let expected = Int64(size - size / 10)
            benchmarkPhase("check queued=\(queued) expected=\(expected)")
            guard queued == expected else { throw BenchmarkFailure("queued \(queued) messages, expected \(expected)") }
          }
        }
      }
    }
  }
}
