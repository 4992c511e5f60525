import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization

/// Journeys at scale (issue #22, SPEC §12), against a throwaway PostgreSQL: 1,000,000 people
/// each send a `signed_up` event (RecordEvents over gRPC, batches of 1,000, one stream); the
/// trigger processor enrols them in a welcome journey; the scheduler (as many workers as a
/// campaign process runs) performs each one's first step — a rendered e-mail with its signed
/// unsubscribe link, enqueued to the delivery service over gRPC — and starts the two-day wait.
/// Goal: the first step at ≥ 10,000 enrolments/s, memory flat (the process's resident memory is
/// sampled at every tenth of the enrolments done). Ceiling in the same run: delivery's
/// EnqueueMessages alone taking 1,000,000 such messages, already rendered, 1,000 a call, with as
/// many callers. Phase times are written as `phase <name> <seconds>` lines.
let benchmarks: @Sendable () -> Void = {
  let size = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_SIZES"].flatMap { Int($0) } ?? 1_000_000
  Benchmark(
    "Journey: \(size / 1000)k enrolments from events, first step",
    configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 0, maxDuration: .seconds(1800), maxIterations: 1)
  ) { benchmark in
    try await journeyFirstStep(size, benchmark: benchmark)
  }
}

/// The process's resident memory in MiB (Linux).
func residentMiB() -> Double {
  guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
    let pages = text.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
  else { return 0 }
  return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

func journeyFirstStep(_ size: Int, benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  var logger = Logger(label: "benchmark")
  logger.logLevel = .warning
  let url = try await TestPostgres.shared.makeDatabase()
  var settings = CampaignSettings()
  settings.secrets = testSecrets
  let journeySettings = settings.journeys
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
            let seedStart = ContinuousClock.now
            try await database.query(
              """
              INSERT INTO campaign.subscribers (email, first_name, attributes, email_subscribed, email_consent_source, email_consented_at)
              SELECT 'user' || g || '@example.com', 'User' || g, jsonb_build_object('n', g), true, 'test-seed', now()
              FROM generate_series(1, \(size)) AS g
              """, logger: logger)
            try await database.query("VACUUM ANALYZE campaign.subscribers", logger: logger)
            benchmarkPhase("seed \(String(format: "%.2f", seconds(since: seedStart))) subscribers=\(size)")
            try await calibrate(database, logger: logger)

            let template = try await campaign.createTemplate(
              .with {
                $0.name = "welcome"
                $0.channel = "email"
                $0.subject = "Welcome, {{first_name}}"
                $0.body = "<p>Welcome {{first_name}}, you are number {{n}}.</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>"
                $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "n" }, .with { $0.name = "unsubscribe_url" }]
              })
            let journey = try await campaign.createJourney(
              .with {
                $0.name = "Welcome"
                $0.definition = .with {
                  $0.trigger = .with {
                    $0.kind = "event"
                    $0.event = "signed_up"
                  }
                  $0.steps = [
                    .with {
                      $0.id = "welcome"
                      $0.kind = "send"
                      $0.templateID = template.id
                    },
                    .with {
                      $0.id = "two-days"
                      $0.kind = "wait"
                      $0.waitSeconds = 172_800
                    },
                  ]
                }
              })
            _ = try await campaign.publishJourney(.with { $0.journeyID = journey.id })

            // The event stream: 1,000 events a call, one caller, each person once.
            let ids = try await database.query("SELECT id FROM campaign.subscribers ORDER BY id", logger: logger).decode(UUID.self)
              .elements()
            let ingestStart = ContinuousClock.now
            for start in stride(from: 0, to: ids.count, by: 1_000) {
              _ = try await campaign.recordEvents(
                .with {
                  $0.events = ids[start..<min(start + 1_000, ids.count)].map { id in
                    .with {
                      $0.name = "signed_up"
                      $0.subscriberID = id.lowercasedString
                      $0.idempotencyKey = "signup:\(id.lowercasedString)"
                      $0.properties = Google_Protobuf_Struct(fields: ["plan": Google_Protobuf_Value(stringValue: "free")])
                    }
                  }
                }, options: .timeout(.seconds(120)))
            }
            let ingest = seconds(since: ingestStart)
            benchmarkPhase("ingest \(String(format: "%.2f", ingest)) events=\(ids.count) rate=\(Int(Double(ids.count) / ingest))/s")

            benchmark.startMeasurement()
            // Events into enrolments: the trigger processor (one at a time holds its lock).
            let triggers = JourneyTriggerProcessor(client: database, logger: logger, batchSize: journeySettings.batchSize)
            let enrolStart = ContinuousClock.now
            try await triggers.drain()
            let enrol = seconds(since: enrolStart)
            benchmarkPhase("enrol \(String(format: "%.2f", enrol)) rate=\(Int(Double(size) / enrol))/s")

            // First steps: the scheduler's workers record them (the outbox), the relay's hand them to
            // delivery, all at once as in a campaign process; memory sampled every tenth relayed.
            let memoryBefore = residentMiB()
            let stepStart = ContinuousClock.now
            let scheduled = ManagedAtomicFlag()
            try await withThrowingTaskGroup(of: Void.self) { group in
              group.addTask { [logger] in
                try await withThrowingTaskGroup(of: Void.self) { schedulers in
                  for _ in 0..<journeySettings.workers {
                    schedulers.addTask { [logger] in
                      try await JourneyScheduler(client: database, settings: journeySettings, logger: logger).drain()
                    }
                  }
                  try await schedulers.waitForAll()
                }
                benchmarkPhase("scheduled \(String(format: "%.2f", seconds(since: stepStart))) (every first step recorded)")
                scheduled.set()
              }
              for _ in 0..<journeySettings.workers {
                group.addTask { [logger] in
                  let relay = JourneyRelay(
                    client: database, sink: DeliverySink(client: deliveryClient), links: links, batchSize: journeySettings.batchSize,
                    logger: logger)
                  // Until the schedulers are done and nothing is left pending.
                  while true {
                    let relayed = try await relay.relayBatch()
                    if relayed == 0 {
                      if scheduled.isSet { break }
                      try await Task.sleep(for: .milliseconds(20))
                    }
                  }
                }
              }
              group.addTask { [logger] in
                var next = 1
                while next <= 10 {
                  let done =
                    try await database.query(
                      "SELECT count(*) FROM campaign.journey_steps_done WHERE outcome <> 'pending'", logger: logger
                    ).decode(Int64.self).elements().first ?? 0
                  while next <= 10 && done >= Int64(size * next / 10) {
                    benchmarkPhase(
                      "memory at \(next * 10)% \(String(format: "%.0f", residentMiB())) MiB after \(String(format: "%.1f", seconds(since: stepStart))) s"
                    )
                    next += 1
                  }
                  if next <= 10 { try await Task.sleep(for: .milliseconds(500)) }
                }
              }
              try await group.waitForAll()
            }
            let step = seconds(since: stepStart)
            benchmark.stopMeasurement()
            benchmarkPhase(
              "first-step \(String(format: "%.2f", step)) rate=\(Int(Double(size) / step))/s (goal 10000/s) memory before \(String(format: "%.0f", memoryBefore)) MiB"
            )

            let sent =
              try await database.query(
                "SELECT count(*) FROM campaign.journey_steps_done WHERE step = 'welcome' AND outcome = 'sent'", logger: logger
              ).decode(Int64.self).elements().first ?? 0
            let queued =
              try await database.query(
                "SELECT count(*) FROM delivery.messages WHERE idempotency_key LIKE 'journey:%'", logger: logger
              ).decode(Int64.self).elements().first ?? 0
            let waiting =
              try await database.query(
                "SELECT count(*) FROM campaign.journey_enrolments WHERE step = 'two-days' AND step_started_at IS NOT NULL",
                logger: logger
              ).decode(Int64.self).elements().first ?? 0
            benchmarkPhase("check sent=\(sent) queued=\(queued) waiting=\(waiting) expected=\(size)")
            guard sent == size, queued == size, waiting == size else {
              throw BenchmarkFailure("sent \(sent), queued \(queued), waiting \(waiting); expected \(size) each")
            }

            // Ceiling: delivery's enqueue alone, the same messages already rendered.
            let body = "<p>Welcome User1, you are number 1.</p><p><a href=\"\(links.publicURL)/u/v1.k1.x\">Unsubscribe</a></p>"
            let ceilingStart = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
              for worker in 0..<journeySettings.workers {
                group.addTask {
                  let sink = DeliverySink(client: deliveryClient)
                  for start in stride(from: worker * 1_000, to: size, by: 1_000 * journeySettings.workers) {
                    var request = Herald_Delivery_V1_EnqueueMessagesRequest()
                    request.messages = (start..<min(start + 1_000, size)).map { n in
                      .with {
                        $0.idempotencyKey = "ceiling:\(n)"
                        $0.channel = .email
                        $0.recipient = "user\(n)@example.com"
                        $0.subject = "Welcome, User\(n)"
                        $0.body = body
                        $0.format = "html"
                        $0.listUnsubscribeURL = "\(links.publicURL)/u/v1.k1.x"
                      }
                    }
                    _ = try await sink.enqueue(request)
                  }
                }
              }
              try await group.waitForAll()
            }
            let ceiling = seconds(since: ceilingStart)
            benchmarkPhase(
              "ceiling \(Int(Double(size) / ceiling))/s (delivery's enqueue alone); the first step is \(String(format: "%.2f", ceiling / step)) of it"
            )
          }
        }
      }
    }
  }
}

/// Set once, read by other tasks.
final class ManagedAtomicFlag: Sendable {
  private let value = Mutex(false)
  func set() { value.withLock { $0 = true } }
  var isSet: Bool { value.withLock { $0 } }
}

func calibrate(_ database: PostgresClient, logger: Logger) async throws {
  let start = ContinuousClock.now
  try await database.query("SELECT sum(g) FROM generate_series(1, 20000000) g", logger: logger)
  benchmarkPhase("calibrate \(String(format: "%.2f", seconds(since: start))) (sum of 20M integers)")
}
