import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf

/// Campaign results (issue #21, SPEC §13), against a throwaway PostgreSQL:
/// - the metric snapshot tick: 1,000 sending campaigns × 3 variants, each with two days of
///   rollup (every status), snapshotted by the one statement a tick runs; goal under 1 s. The
///   same rollup read alone (the aggregate, no writes) is measured in the same run.
/// - conversion ingest: 50,000 conversions in batches of 1,000 through the campaign service's
///   RecordConversions (gRPC, two callers at once), each attributed over 300,000 touches; goal
///   5,000/s. PostgreSQL's plain insert of the same rows (one statement per 1,000, no lookups)
///   is measured in the same run as the ceiling.
/// Phase times are written as `phase <name> <seconds>` lines.
let benchmarks: @Sendable () -> Void = {
  Benchmark(
    "Snapshot tick, 1,000 campaigns x 3 variants",
    configuration: .init(metrics: [.wallClock], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await snapshotTick(benchmark: benchmark)
  }
  Benchmark(
    "Conversion ingest, 50,000 in batches of 1,000",
    configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await conversionIngest(benchmark: benchmark)
  }
}

func quietLogger() -> Logger {
  var logger = Logger(label: "benchmark")
  logger.logLevel = .warning
  return logger
}

func calibrate(_ database: PostgresClient, logger: Logger) async throws {
  let start = ContinuousClock.now
  try await database.query("SELECT sum(g) FROM generate_series(1, 20000000) g", logger: logger)
  benchmarkPhase("calibrate \(String(format: "%.2f", seconds(since: start))) (sum of 20M integers)")
}

/// The campaign schema, migrated by a campaign service started and stopped for it.
func migratedDatabase() async throws -> String {
  let url = try await TestPostgres.shared.makeDatabase()
  var definition = CampaignDefinition.definition(settings: CampaignSettings())
  definition.readinessDependencies = []
  definition.makeWorkers = { _ in [] }
  try await withRunningService(definition, databaseURL: url) { _, _ in }
  return url
}

func snapshotTick(benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  let logger = quietLogger()
  let url = try await migratedDatabase()
  try await withDatabase(url) { database in
    let seedStart = ContinuousClock.now
    try await database.query(
      """
      WITH l AS (INSERT INTO campaign.lists (name) VALUES ('all') RETURNING id),
      t AS (
        INSERT INTO campaign.templates (name, channel, format, subject, body, variables)
        VALUES ('t', 'email', 'text', 'Hi', 'Hi', '[]') RETURNING id
      ), c AS (
        INSERT INTO campaign.campaigns (name, channel, list_id, status, audience_count, started_at)
        SELECT 'campaign ' || g, 'email', l.id, 'sending', 30000, now() FROM l, generate_series(1, 1000) g RETURNING id
      ), v AS (
        INSERT INTO campaign.campaign_variants (campaign_id, position, name, template_id, weight, recipients)
        SELECT c.id, p, chr(65 + p), t.id, 1, 10000 FROM c, t, generate_series(0, 2) p RETURNING campaign_id, name
      )
      INSERT INTO campaign.campaign_daily_stats (campaign_id, variant, day, status, events, cost_cents, value_cents)
      SELECT v.campaign_id, v.name, current_date - d, s, 1000 + (random() * 1000)::int, CASE WHEN s = 'sent' THEN 2000 ELSE 0 END,
        CASE WHEN s = 'converted' THEN 50000 ELSE 0 END
      FROM v, generate_series(0, 1) d,
        unnest(ARRAY['queued', 'sent', 'delivered', 'bounced', 'soft_bounced', 'failed', 'opened', 'unique_opened', 'clicked',
          'unique_clicked', 'replied', 'unsubscribed', 'complained', 'converted', 'machine_opened', 'machine_clicked']) s
      """, logger: logger)
    try await database.query("VACUUM ANALYZE", logger: logger)
    let cells =
      try await database.query("SELECT count(*) FROM campaign.campaign_daily_stats", logger: logger)
      .decode(Int64.self).elements().first ?? 0
    benchmarkPhase("seed \(String(format: "%.2f", seconds(since: seedStart))) campaigns=1000 variants=3 rollup_cells=\(cells)")
    try await calibrate(database, logger: logger)

    // The baseline: the rollup read and aggregated alone, as the tick does, nothing written.
    let readStart = ContinuousClock.now
    let groups =
      try await database.query(
        """
        SELECT count(*) FROM (
          SELECT d.campaign_id, d.variant, \(unescaped: CampaignStore.snapshotCounters)
          FROM campaign.campaign_daily_stats d GROUP BY GROUPING SETS ((d.campaign_id, d.variant), (d.campaign_id))) x
        """, logger: logger
      ).decode(Int64.self).elements().first ?? 0
    benchmarkPhase("baseline \(String(format: "%.3f", seconds(since: readStart))) (the rollup aggregated alone: \(groups) rows)")

    // An hour of sending: twelve ticks, 5 minutes apart; each must write 4,000 rows.
    let store = CampaignStore(client: database, logger: logger)
    let base = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 3600).rounded(.up) * 3600 + 3600)
    var worst = 0.0
    benchmark.startMeasurement()
    for tick in 0..<12 {
      let start = ContinuousClock.now
      let written = try await store.takeSnapshots(at: base.addingTimeInterval(Double(tick) * 300 + 1))
      let elapsed = seconds(since: start)
      worst = max(worst, elapsed)
      benchmarkPhase("tick \(tick + 1) \(String(format: "%.3f", elapsed)) campaigns=\(written.campaigns) rows=\(written.rows)")
      guard written.campaigns == 1000, written.rows == 4000 else {
        throw BenchmarkFailure("tick \(tick + 1) wrote \(written.rows) rows for \(written.campaigns) campaigns, expected 4000 for 1000")
      }
    }
    benchmark.stopMeasurement()
    benchmarkPhase("worst tick \(String(format: "%.3f", worst)) (goal < 1 s)")
    guard worst < 1 else { throw BenchmarkFailure("a tick took \(worst) s; the goal is under 1 s") }
  }
}

func conversionIngest(benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  let logger = quietLogger()
  let url = try await migratedDatabase()
  var definition = CampaignDefinition.definition(settings: CampaignSettings())
  definition.readinessDependencies = []
  definition.makeWorkers = { _ in [] }
  try await withRunningService(definition, databaseURL: url) { port, _ in
    try await withClient(port: port) { client in
      try await withDatabase(url) { database in
        let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: client)
        let list = try await campaign.createList(.with { $0.name = "all" })
        let seedStart = ContinuousClock.now
        try await seedSubscribers(100_000, list: UUID(uuidString: list.id)!, database: database)
        // Three sent campaigns, each with a touch for every subscriber: delivered, a third opened,
        // a tenth clicked, spread over the last five days.
        try await database.query(
          """
          WITH t AS (
            INSERT INTO campaign.templates (name, channel, format, subject, body, variables)
            VALUES ('t', 'email', 'text', 'Hi', 'Hi', '[]') RETURNING id
          ), c AS (
            INSERT INTO campaign.campaigns (name, channel, list_id, status, started_at, finished_at)
            SELECT 'sent ' || g, 'email', \(UUID(uuidString: list.id)!), 'sent', now() - interval '5 days', now() - interval '5 days'
            FROM generate_series(1, 3) g RETURNING id
          ), v AS (
            INSERT INTO campaign.campaign_variants (campaign_id, position, name, template_id, weight)
            SELECT c.id, 0, 'default', t.id, 1 FROM c, t RETURNING campaign_id
          )
          INSERT INTO campaign.campaign_touches (subscriber_id, campaign_id, variant, delivered_at, opened_at, clicked_at)
          SELECT s.id, v.campaign_id, 'default', now() - random() * interval '5 days',
            CASE WHEN random() < 0.33 THEN now() - random() * interval '4 days' END,
            CASE WHEN random() < 0.1 THEN now() - random() * interval '3 days' END
          FROM campaign.subscribers s, v
          """, logger: logger)
        try await database.query("VACUUM ANALYZE", logger: logger)
        let touches =
          try await database.query("SELECT count(*) FROM campaign.campaign_touches", logger: logger)
          .decode(Int64.self).elements().first ?? 0
        benchmarkPhase("seed \(String(format: "%.2f", seconds(since: seedStart))) subscribers=100000 touches=\(touches)")
        try await calibrate(database, logger: logger)

        let total = 50_000
        let batches = (0..<(total / 1_000)).map { batch in
          (0..<1_000).map { index in
            let n = batch * 1_000 + index
            return Herald_Campaign_V1_ConversionInput.with {
              $0.email = "user\(n % 100_000 + 1)@example.com"
              $0.valueCents = Int64(100 + n % 9_900)
              $0.currency = "USD"
              $0.idempotencyKey = "order-\(n)"
            }
          }
        }
        benchmark.startMeasurement()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
          for caller in 0..<2 {
            group.addTask {
              for batch in stride(from: caller, to: batches.count, by: 2) {
                let answer = try await campaign.recordConversions(.with { $0.conversions = batches[batch] })
                guard answer.recorded == 1_000 else { throw BenchmarkFailure("batch \(batch) recorded \(answer.recorded)") }
              }
            }
          }
          try await group.waitForAll()
        }
        let elapsed = seconds(since: start)
        benchmark.stopMeasurement()
        let rate = Double(total) / elapsed
        benchmarkPhase("ingest \(String(format: "%.2f", elapsed)) conversions=\(total) rate=\(Int(rate))/s (goal 5000/s)")
        let attributed = try await database.query(
          "SELECT attribution, count(*) FROM campaign.conversions GROUP BY 1 ORDER BY 1", logger: logger
        ).decode((String, Int64).self).elements()
        benchmarkPhase("check \(attributed.map { "\($0.0)=\($0.1)" }.joined(separator: " "))")

        // The ceiling: the same rows inserted by PostgreSQL alone, 1,000 a statement, no lookups.
        try await database.query(
          "CREATE TABLE campaign.conversions_ceiling (LIKE campaign.conversions INCLUDING ALL)", logger: logger)
        let rows = try await database.query(
          "SELECT subscriber_id, campaign_id, value_cents, occurred_at FROM campaign.conversions", logger: logger
        ).decode((UUID, UUID?, Int64, Date).self).elements()
        let ceilingStart = ContinuousClock.now
        for chunk in stride(from: 0, to: rows.count, by: 1_000) {
          let part = rows[chunk..<min(chunk + 1_000, rows.count)]
          try await database.query(
            """
            INSERT INTO campaign.conversions_ceiling (idempotency_key, subscriber_id, attribution, value_cents, currency, occurred_at)
            SELECT \("ceiling-\(chunk)-") || n, s, 'none', v, 'USD', o
            FROM unnest(\(part.map(\.0))::uuid[], \(part.map(\.2))::int8[], \(part.map(\.3))::timestamptz[])
              WITH ORDINALITY AS u(s, v, o, n)
            """, logger: logger)
        }
        let ceiling = Double(rows.count) / seconds(since: ceilingStart)
        benchmarkPhase("ceiling \(Int(ceiling))/s (plain insert); ingest is \(String(format: "%.2f", rate / ceiling)) of it")
        guard rate >= 5_000 else { throw BenchmarkFailure("ingest ran at \(Int(rate))/s; the goal is 5,000/s") }
      }
    }
  }
}
