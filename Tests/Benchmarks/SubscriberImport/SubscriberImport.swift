import Benchmark
import Foundation
import HTTPTypes
import HeraldCampaign
import HeraldCore
import HeraldGateway
import HeraldPostgres
import HeraldServerKit
import HeraldTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import Prometheus

/// A CSV import as a user sends it (issue #18): one streamed `POST /v1/subscribers/import` to
/// the gateway (a real HTTP server on loopback), which streams the rows over gRPC to the campaign
/// service, which writes them in chunks; both run in this process against a throwaway
/// PostgreSQL. Beside it, in the same run, the ceiling: PostgreSQL alone writing the same kind of
/// rows and their consent events, 500 rows per statement from one client, with nothing in
/// between. Phase lines: `phase <name> ...`.
let benchmarks: @Sendable () -> Void = {
  let sizes = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_SIZES"].map { $0.split(separator: ",").compactMap { Int($0) } }
  for size in sizes ?? [20_000, 100_000] {
    Benchmark(
      "Import \(size / 1000)k CSV rows",
      configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
    ) { benchmark in
      try await importCSV(size, benchmark: benchmark)
    }
  }
}

let adminKey = "hrld_benchmark-admin-key-0123456789"

func csv(_ size: Int, prefix: String) -> ByteBuffer {
  var text = "email,first_name,last_name,email_consent,plan,city\n"
  text.reserveCapacity(size * 80)
  for n in 0..<size { text += "\(prefix)\(n)@example.com,First\(n),Last \(n),yes,\(n % 3 == 0 ? "pro" : "free"),City \(n % 100)\n" }
  return ByteBuffer(string: text)
}

func importCSV(_ size: Int, benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  // The measured part runs in the test client's @Sendable closure; nothing else touches the
  // benchmark meanwhile.
  nonisolated(unsafe) let benchmark = benchmark
  let logger = {
    var logger = Logger(label: "benchmark")
    logger.logLevel = .warning
    return logger
  }()
  let url = try await TestPostgres.shared.makeDatabase()
  var campaignDefinition = CampaignDefinition.definition
  campaignDefinition.readinessDependencies = []
  campaignDefinition.makeWorkers = { _ in [] }
  try await withRunningService(campaignDefinition, databaseURL: url) { campaignPort, _ in
    var services = Dictionary(uniqueKeysWithValues: ServiceCatalog.backEnds.map { ($0, ServiceAddress(host: "127.0.0.1", port: 1)) })
    services["campaign"] = ServiceAddress(host: "127.0.0.1", port: campaignPort)
    let configuration = GatewayConfiguration(
      port: 0, database: try DatabaseConfiguration(url: url), services: services, statusTimeout: .seconds(3), adminKey: adminKey)
    let app = try buildGateway(configuration: configuration, registry: PrometheusCollectorRegistry(), announceKey: { _ in })
    try await app.test(.live) { client in
      try await withDatabase(url) { database in
        // The machine's speed varies between runs; a fixed piece of CPU work in PostgreSQL shows
        // how fast it was during this one.
        let calibrateStart = ContinuousClock.now
        try await database.query("SELECT sum(g) FROM generate_series(1, 20000000) g", logger: logger)
        benchmarkPhase("calibrate \(String(format: "%.2f", seconds(since: calibrateStart))) (sum of 20M integers)")

        let ceiling = try await ceilingRowsPerSecond(size, database: database, logger: logger)

        let body = csv(size, prefix: "import")
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(adminKey)"
        headers[.contentType] = "text/csv"
        let cpuBefore = cpuSeconds()
        benchmark.startMeasurement()
        let start = ContinuousClock.now
        let answer = try await client.execute(
          uri: "/v1/subscribers/import?consent_source=benchmark", method: .post, headers: headers, body: body
        ) { response in
          (response.status, String(buffer: response.body))
        }
        let elapsed = seconds(since: start)
        benchmark.stopMeasurement()
        let cpuAfter = cpuSeconds()
        guard answer.0 == .ok, answer.1.contains("\"created\":\"\(size)\"") else {
          throw BenchmarkFailure("the import answered \(answer.0): \(answer.1)")
        }
        let stored =
          try await database.query(
            "SELECT count(*) FROM campaign.subscribers WHERE email LIKE 'import%' AND email_subscribed", logger: logger
          ).collect().first?.decode(Int64.self) ?? 0
        guard stored == size else { throw BenchmarkFailure("\(stored) subscribers stored, expected \(size)") }
        let rate = Double(size) / elapsed
        benchmarkPhase(
          "import rows=\(size) seconds=\(String(format: "%.2f", elapsed)) rows_per_second=\(Int(rate))"
            + " ceiling_rows_per_second=\(Int(ceiling)) ratio=\(String(format: "%.2f", rate / ceiling))"
            + " cpu_herald=\(String(format: "%.2f", cpuAfter.own - cpuBefore.own))"
            + " cpu_postgres=\(String(format: "%.2f", cpuAfter.postgres - cpuBefore.postgres))")
      }
    }
  }
}

/// The same rows (other addresses) written by PostgreSQL alone: 500 per statement, each with its
/// consent event, one client, no checks, no network hop but the database's.
func ceilingRowsPerSecond(_ size: Int, database: PostgresClient, logger: Logger) async throws -> Double {
  let start = ContinuousClock.now
  for chunk in stride(from: 0, to: size, by: 500) {
    let numbers = Array(chunk..<min(chunk + 500, size))
    try await database.query(
      """
      WITH inserted AS (
        INSERT INTO campaign.subscribers (email, first_name, last_name, attributes, email_subscribed, email_consent_source, email_consented_at)
        SELECT r.email, r.first_name, r.last_name, r.attributes::jsonb, true, 'ceiling', now()
        FROM unnest(\(numbers.map { "ceiling\($0)@example.com" })::text[], \(numbers.map { "First\($0)" })::text[],
          \(numbers.map { "Last \($0)" })::text[],
          \(numbers.map { #"{"plan": "\#($0 % 3 == 0 ? "pro" : "free")", "city": "City \#($0 % 100)"}"# })::text[])
          AS r(email, first_name, last_name, attributes)
        ON CONFLICT DO NOTHING
        RETURNING id
      )
      INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at)
      SELECT id, 'email', true, 'ceiling', now() FROM inserted
      """, logger: logger)
  }
  let elapsed = seconds(since: start)
  benchmarkPhase("ceiling rows=\(size) seconds=\(String(format: "%.2f", elapsed)) rows_per_second=\(Int(Double(size) / elapsed))")
  return Double(size) / elapsed
}
