import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf

/// End-to-end delivery throughput (issue #4): messages per second from `EnqueueMessages` to "sent"
/// at a local HTTP sink in a process of its own (a webhook provider, async-http-client to nginx on
/// loopback), with
/// the delivery service's own workers. In the same run, the PostgreSQL ceiling of the same
/// claim/settle pattern: the same workers with a provider that answers at once, so the ratio
/// between the two is known. Everything (services, sink, PostgreSQL) shares this machine.
let messages = 50_000

let benchmarks: @Sendable () -> Void = {
  Benchmark(
    "PostgreSQL ceiling: claim and settle \(messages / 1000)k messages",
    configuration: .init(metrics: [.wallClock], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await ceiling(benchmark: benchmark)
  }
  Benchmark(
    "End to end: enqueue to sent at an HTTP sink, \(messages / 1000)k messages",
    configuration: .init(
      metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await endToEnd(benchmark: benchmark, limited: false)
  }
  Benchmark(
    "End to end with rate limits that do not bind, \(messages / 1000)k messages",
    configuration: .init(
      metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await endToEnd(benchmark: benchmark, limited: true)
  }
}

/// The settings both runs use: the defaults but for a short idle poll (and a key to seal the
/// provider's secrets with).
func settings() -> DeliverySettings {
  var settings = DeliverySettings()
  settings.idle = .milliseconds(10)
  settings.secrets = testSecrets
  return settings
}

/// A provider that accepts every message at once: what is left is the queue's own work.
struct InstantProvider: DeliveryProvider {
  func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? { nil }
  func shutdown() async {}
}

func message(_ n: Int) -> Herald_Delivery_V1_OutboundMessage {
  .with {
    $0.idempotencyKey = "bench:\(n)"
    $0.channel = .email
    $0.recipient = "user\(n)@example.com"
    $0.subject = "Hello \(n)"
    $0.body = "<p>Hello user \(n), this is message number \(n) of the benchmark.</p>"
  }
}

func waitUntilSent(_ database: PostgresClient, logger: Logger) async throws {
  while true {
    let sent =
      try await database.query(
        "SELECT count(*)::int FROM delivery.messages WHERE status = 'sent'", logger: logger
      ).decode(Int.self).elements().first ?? 0
    if sent >= messages { return }
    try await Task.sleep(for: .milliseconds(50))
  }
}

/// The delivery service on a fresh database; with `limited`, beside a rate-limit service holding a
/// `domain=*` limit and a limit on the provider, both far above what is sent, so that every send
/// is decided (one call per claimed batch) and none waits.
func withDelivery(
  provider: Herald_Delivery_V1_Provider, factory: ProviderRegistry.Factory?, limited: Bool = false,
  _ body: (Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>, PostgresClient, Logger) async throws -> Void
) async throws {
  var logger = Logger(label: "benchmark")
  logger.logLevel = .warning
  let url = try await TestPostgres.shared.makeDatabase()
  guard limited else {
    return try await withDelivery(url: url, provider: provider, factory: factory, dependencies: [:], logger: logger, body)
  }
  try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { rateLimitPort, _ in
    try await withClient(port: rateLimitPort) { client in
      let limits = Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
      for (key, value) in [("domain", "*"), ("provider", provider.name)] {
        _ = try await limits.putLimit(
          .with {
            $0.descriptors = [
              .with {
                $0.key = key
                $0.value = value
              }
            ]
            $0.requestsPerUnit = 100_000_000
            $0.unit = .hour
            $0.algorithm = .fixedWindow  // counts what was taken until the hour ends (a bucket refills)
          })
      }
      try await withDelivery(
        url: url, provider: provider, factory: factory,
        dependencies: ["ratelimit": ServiceAddress(host: "127.0.0.1", port: rateLimitPort)], logger: logger, body)
      let state = try await limits.getRateLimitState(.init())
      let decided = state.counters.filter { $0.limitKey.hasPrefix("provider=") }.map { $0.limit - $0.remaining }.reduce(0, +)
      benchmarkPhase("limits decided=\(decided) (sends taken from the provider's limit)")
      // All of them, unless the run crossed the top of an hour (the window restarts).
      guard decided > 0 else { throw BenchmarkFailure("the rate-limit service decided no send") }
    }
  }
}

func withDelivery(
  url: String, provider: Herald_Delivery_V1_Provider, factory: ProviderRegistry.Factory?, dependencies: [String: ServiceAddress],
  logger: Logger,
  _ body: (Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>, PostgresClient, Logger) async throws -> Void
) async throws {
  var definition = DeliveryDefinition.make(settings: settings(), providerFactory: factory)
  definition.readinessDependencies = []
  try await withRunningService(definition, databaseURL: url, dependencies: dependencies) { port, _ in
    try await withClient(port: port) { client in
      try await withDatabase(url) { database in
        let delivery = Herald_Delivery_V1_DeliveryService.Client(wrapping: client)
        _ = try await delivery.putProvider(provider)
        try await body(delivery, database, logger)
      }
    }
  }
}

func ceiling(benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  let provider = Herald_Delivery_V1_Provider.with {
    $0.name = "instant"
    $0.channel = .email
    $0.webhook = .with { $0.url = "http://127.0.0.1:9/unused" }
  }
  // Workers start with the service; queue everything first (not due yet), then make it due.
  try await withDelivery(provider: provider, factory: { _, _ in InstantProvider() }) { delivery, database, logger in
    for chunk in stride(from: 0, to: messages, by: 1000) {
      _ = try await delivery.enqueueMessages(
        .with {
          $0.messages = (chunk..<(chunk + 1000)).map { n in
            var queued = message(n)
            queued.notBefore = .init(date: Date() + 3600)
            return queued
          }
        })
    }
    try await database.query("VACUUM ANALYZE delivery.messages", logger: logger)
    benchmark.startMeasurement()
    let start = ContinuousClock.now
    let cpu = cpuSeconds()
    try await database.query("UPDATE delivery.messages SET not_before = now()", logger: logger)
    try await waitUntilSent(database, logger: logger)
    let elapsed = seconds(since: start)
    let used = cpuSeconds()
    benchmark.stopMeasurement()
    benchmarkPhase(
      String(
        format:
          "ceiling messages=%d seconds=%.2f per_second=%.0f (workers=%d batch=%d, instant provider) cpu_seconds: herald=%.1f postgres=%.1f",
        messages, elapsed, Double(messages) / elapsed, settings().workers, settings().batchSize, used.own - cpu.own,
        used.postgres - cpu.postgres))
  }
}

func endToEnd(benchmark: Benchmark, limited: Bool) async throws {
  benchmark.stopMeasurement()
  try await withNginxSink { port, sinkPID, requests in
    let provider = Herald_Delivery_V1_Provider.with {
      $0.name = "sink"
      $0.channel = .email
      $0.webhook = .with { $0.url = "http://127.0.0.1:\(port)/send" }
    }
    try await withDelivery(provider: provider, factory: nil, limited: limited) { delivery, database, logger in
      benchmark.startMeasurement()
      let start = ContinuousClock.now
      let cpu = cpuSeconds(other: sinkPID)
      for chunk in stride(from: 0, to: messages, by: 1000) {
        _ = try await delivery.enqueueMessages(.with { $0.messages = (chunk..<(chunk + 1000)).map(message) })
      }
      let enqueued = seconds(since: start)
      try await waitUntilSent(database, logger: logger)
      let elapsed = seconds(since: start)
      let used = cpuSeconds(other: sinkPID)
      benchmark.stopMeasurement()
      // nginx logs a request once it has answered it, which Herald saw before it recorded "sent".
      try await eventually(timeout: .seconds(20), "the sink's log to count every request") { requests() >= messages }
      let served = requests()
      benchmarkPhase(
        String(
          format:
            "end_to_end\(limited ? "_with_limits" : "") messages=%d seconds=%.2f per_second=%.0f enqueue_done_at=%.2f sink_requests=%d cpu_seconds: herald=%.1f postgres=%.1f sink=%.1f",
          messages, elapsed, Double(messages) / elapsed, enqueued, served, used.own - cpu.own, used.postgres - cpu.postgres,
          used.other - cpu.other))
      guard served == messages else { throw BenchmarkFailure("the sink got \(served) requests for \(messages) messages") }
    }
  }
}
