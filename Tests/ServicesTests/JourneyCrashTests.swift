import Foundation
import GRPCCore
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
import Testing

/// The real `campaign` executable killed with SIGKILL while its journey schedulers and relays are
/// in the middle of their batches, then started again (SPEC §12, §9): every enrolment does every
/// step exactly once — each send reaches delivery once, each update is applied, none is skipped.
@Suite(.timeLimit(.minutes(5))) struct JourneyCrashTests {
  static let people = 6_000

  @Test func aSchedulerKilledMidBatchRepeatsNothingAndSkipsNothing() async throws {
    let executable = try builtExecutable("campaign")
    let url = try await TestPostgres.shared.makeDatabase()
    let logger = Logger(label: "test.journey-crash")
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) {
      deliveryPort, _ async throws in
      let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-journey-crash-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: folder) }
      let port = try freePort()
      var environment = ProcessInfo.processInfo.environment
      environment["HERALD_DATABASE_URL"] = url
      environment["HERALD_PORT"] = String(port)
      environment["HERALD_DELIVERY_ADDR"] = "127.0.0.1:\(deliveryPort)"
      environment["HERALD_SECRETS_KEY"] = "test:" + Data(repeating: 0x11, count: 32).base64EncodedString()
      // Small batches: many transactions, so the kill lands in the middle of one.
      environment["HERALD_JOURNEY_BATCH"] = "20"
      environment["HERALD_JOURNEY_WORKERS"] = "2"
      environment["HERALD_LOG_LEVEL"] = "warning"

      try await withDatabase(url) { database async throws in
        func count(_ sql: String) async throws -> Int {
          try await database.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(Int.self).elements().first ?? -1
        }
        do {
          try await killAndResume()
        } catch {
          Issue.record("the campaign processes' log:\n\((try? String(contentsOfFile: folder + "/campaign.log", encoding: .utf8)) ?? "")")
          throw error
        }
        func killAndResume() async throws {
          let first = try SpawnedProcess(executable, [], output: folder + "/campaign.log", environment: environment)
          var killed = false
          defer { if !killed { first.kill() } }
          try await withClient(port: port) { client async throws in
            let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: client)
            try await eventually(timeout: .seconds(60), "the campaign service to answer") {
              (try? await campaign.listJourneys(.init())) != nil
            }
            func template(_ name: String) async throws -> String {
              try await campaign.createTemplate(
                .with {
                  $0.name = name
                  $0.channel = "email"
                  $0.subject = "\(name) {{first_name}}"
                  $0.body = #"<p>\#(name) {{first_name}}</p><p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#
                  $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "unsubscribe_url" }]
                }
              ).id
            }
            let hello = try await template("Hello")
            let tips = try await template("Tips")
            let journey = try await campaign.createJourney(
              .with {
                $0.name = "Onboarding"
                $0.definition = .with {
                  $0.trigger = .with {
                    $0.kind = "event"
                    $0.event = "signed_up"
                  }
                  $0.steps = [
                    .with {
                      $0.id = "hello"
                      $0.kind = "send"
                      $0.templateID = hello
                    },
                    .with {
                      $0.id = "tag"
                      $0.kind = "update"
                      $0.attributes = Google_Protobuf_Struct(fields: ["onboarded": Google_Protobuf_Value(boolValue: true)])
                    },
                    .with {
                      $0.id = "tips"
                      $0.kind = "send"
                      $0.templateID = tips
                    },
                  ]
                }
              })
            _ = try await campaign.publishJourney(.with { $0.journeyID = journey.id })
            try await database.query(
              """
              INSERT INTO campaign.subscribers (email, first_name, email_subscribed, email_consent_source, email_consented_at)
              SELECT 'crash' || g || '@example.com', 'Person' || g, true, 'test-seed', now() FROM generate_series(1, \(Self.people)) g
              """, logger: logger)
            let ids = try await database.query("SELECT id FROM campaign.subscribers ORDER BY email", logger: logger).decode(UUID.self)
              .elements()
            for start in stride(from: 0, to: ids.count, by: 1_000) {
              _ = try await campaign.recordEvents(
                .with {
                  $0.events = ids[start..<min(start + 1_000, ids.count)].map { id in
                    .with {
                      $0.name = "signed_up"
                      $0.subscriberID = id.lowercasedString
                      $0.idempotencyKey = "signup-\(id.lowercasedString)"
                    }
                  }
                })
            }
          }
          try await eventually(timeout: .seconds(120), "some steps to be done") {
            try await count("SELECT count(*)::int FROM campaign.journey_steps_done") >= 600
          }
          first.kill()
          killed = true
          let doneAtKill = try await count("SELECT count(*)::int FROM campaign.journey_steps_done")
          #expect(doneAtKill < 3 * Self.people, "killed after \(doneAtKill) steps: too late to test anything")

          let second = try SpawnedProcess(executable, [], output: folder + "/campaign.log", environment: environment)
          defer { second.kill() }
          try await eventually(timeout: .seconds(180), "every enrolment to complete and every send to be relayed") {
            let completed = try await count("SELECT count(*)::int FROM campaign.journey_enrolments WHERE status = 'completed'")
            let pending = try await count("SELECT count(*)::int FROM campaign.journey_steps_done WHERE outcome = 'pending'")
            return completed == Self.people && pending == 0
          }
        }

        // Each enrolment: three steps done, two messages in delivery (one per send step and
        // version), its attribute set; every event acted on once.
        #expect(try await count("SELECT count(*)::int FROM campaign.journey_enrolments") == Self.people)
        #expect(try await count("SELECT count(*)::int FROM campaign.journey_steps_done") == 3 * Self.people)
        #expect(
          try await count(
            "SELECT count(*)::int FROM campaign.journey_steps_done WHERE kind = 'send' AND outcome = 'sent' AND message_id IS NOT NULL")
            == 2 * Self.people)
        #expect(try await count("SELECT count(*)::int FROM delivery.messages WHERE idempotency_key LIKE 'journey:%'") == 2 * Self.people)
        #expect(
          try await count(
            """
            SELECT count(*)::int FROM (
              SELECT split_part(idempotency_key, ':', 5) FROM delivery.messages WHERE idempotency_key LIKE 'journey:%'
              GROUP BY 1 HAVING count(*) <> 2) x
            """) == 0)
        #expect(
          try await count(
            """
            SELECT count(*)::int FROM campaign.journey_steps_done d
            WHERE d.kind = 'send' AND NOT EXISTS (SELECT 1 FROM delivery.messages m WHERE m.id = d.message_id)
            """) == 0)
        #expect(
          try await count("SELECT count(*)::int FROM campaign.subscribers WHERE attributes @> '{\"onboarded\": true}'") == Self.people)
        #expect(try await count("SELECT count(*)::int FROM campaign.events WHERE processed_at IS NULL") == 0)
      }
    }
  }
}
