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
import Testing

/// Journeys (SPEC §12) on real PostgreSQL, with delivery sending to a local SMTP server: the
/// trigger processor, the scheduler and the delivery feed are driven by the test with the time
/// passed in, so a two-day wait is two days later without waiting for it.
@Suite(.timeLimit(.minutes(8))) struct JourneyTests {
  typealias Campaign = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  static let publicURL = "https://mail.herald.test"
  static let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

  struct Harness {
    var campaign: Campaign
    var delivery: MailTests.Delivery
    var database: PostgresClient
    var sink: SMTPSink
    var triggers: JourneyTriggerProcessor
    var scheduler: JourneyScheduler
    var relay: JourneyRelay
    var feed: DeliveryFeedConsumer
    var deliverySink: DeliverySink

    /// Events into enrolments, the steps due at `now`, then their sends to delivery.
    func run(at now: Date) async throws {
      try await triggers.drain(at: now)
      try await scheduler.drain(at: now)
      try await relay.drain()
    }

    /// The subjects the SMTP server received for `email`, once `count` have arrived.
    func subjects(to email: String, count: Int) async throws -> [String] {
      try await eventually(timeout: .seconds(60), "\(count) messages to \(email) at the SMTP server") {
        sink.messages.filter { $0.to.contains(email) }.count >= count
      }
      return sink.messages.filter { $0.to.contains(email) }.map(\.subject).sorted()
    }

    func person(_ name: String, _ email: String) async throws -> Herald_Campaign_V1_Subscriber {
      try await campaign.createSubscriber(
        .with {
          $0.email = email
          $0.firstName = name
          $0.emailConsent = .with {
            $0.subscribed = true
            $0.source = "signup-form"
          }
        })
    }

    func template(_ name: String, subject: String, body: String = "<p>Hello {{first_name}}</p>") async throws -> String {
      try await campaign.createTemplate(
        .with {
          $0.name = name
          $0.channel = "email"
          $0.subject = subject
          $0.body = body + #"<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#
          $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "unsubscribe_url" }]
        }
      ).id
    }

    func event(_ name: String, _ email: String, key: String, properties: [String: Google_Protobuf_Value] = [:])
      async throws -> Herald_Campaign_V1_RecordEventsResponse
    {
      try await campaign.recordEvents(
        .with {
          $0.events = [
            .with {
              $0.name = name
              $0.email = email
              $0.idempotencyKey = key
              $0.properties = Google_Protobuf_Struct(fields: properties)
            }
          ]
        })
    }

    func enrolments(_ journey: String) async throws -> [Herald_Campaign_V1_JourneyEnrolment] {
      try await campaign.listJourneyEnrolments(.with { $0.journeyID = journey }).enrolments
    }

    func count(_ sql: String) async throws -> Int {
      try await database.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test.journeys")).decode(Int.self).elements()
        .first ?? -1
    }
  }

  func withJourneys(_ body: (Harness) async throws -> Void) async throws {
    try await MailTests().withDelivery(secrets: MailTests.secrets) { delivery, database, sink, deliveryPort, url in
      var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
      provider.webhookSecret = "inbound-secret"
      _ = try await delivery.putProvider(provider)
      var settings = CampaignSettings()
      settings.publicURL = Self.publicURL
      settings.secrets = MailTests.secrets
      var definition = CampaignDefinition.definition(settings: settings)
      definition.readinessDependencies = []
      definition.makeWorkers = { _ in [] }
      try await withRunningService(
        definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { client async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            let sinkClient = DeliverySink(client: deliveryClient)
            let logger = Logger(label: "test.journeys")
            try await body(
              Harness(
                campaign: Campaign(wrapping: client), delivery: delivery, database: database, sink: sink,
                triggers: JourneyTriggerProcessor(client: database, logger: logger),
                scheduler: JourneyScheduler(client: database, logger: logger),
                relay: JourneyRelay(
                  client: database, sink: sinkClient, links: UnsubscribeLinks(publicURL: Self.publicURL, secrets: MailTests.secrets),
                  tracking: TrackingLinks(publicURL: Self.publicURL, secrets: MailTests.secrets), logger: logger),
                feed: DeliveryFeedConsumer(client: database, source: sinkClient, logger: logger), deliverySink: sinkClient))
          }
        }
      }
    }
  }

  static func step(_ id: String, _ kind: String, _ configure: (inout Herald_Campaign_V1_JourneyStep) -> Void = { _ in })
    -> Herald_Campaign_V1_JourneyStep
  {
    var step = Herald_Campaign_V1_JourneyStep()
    step.id = id
    step.kind = kind
    configure(&step)
    return step
  }

  static func send(_ id: String, _ template: String, next: String = "", opens: Bool = false) -> Herald_Campaign_V1_JourneyStep {
    step(id, "send") {
      $0.templateID = template
      $0.nextStep = next
      $0.trackOpens = opens
    }
  }

  static func wait(_ id: String, seconds: Int32) -> Herald_Campaign_V1_JourneyStep {
    step(id, "wait") { $0.waitSeconds = seconds }
  }

  static func condition(_ field: String, _ op: String, _ value: Google_Protobuf_Value) -> Herald_Campaign_V1_JourneyCondition {
    .with {
      $0.field = field
      $0.op = op
      $0.value = value
    }
  }

  func expectRefused<T>(_ code: RPCError.Code, field: String, _ call: () async throws -> T) async {
    do {
      _ = try await call()
      Issue.record("accepted; expected \(code) naming \(field)")
    } catch let error as RPCError {
      #expect(error.code == code && error.field == field, "\(error)")
    } catch {
      Issue.record("\(error)")
    }
  }

  @Test func aWelcomeSeriesWaitsTwoDaysAndBranchesOnTheWelcomeBeingOpened() async throws {
    try await withJourneys { h in
      let list = try await h.campaign.createList(.with { $0.name = "newsletter" })
      let welcome = try await h.template("welcome", subject: "Welcome {{first_name}}")
      let thanks = try await h.template("thanks", subject: "Thanks for reading, {{first_name}}")
      let nudge = try await h.template("nudge", subject: "Did you miss us, {{first_name}}?")
      var series = Herald_Campaign_V1_JourneyDefinition()
      series.trigger = .with {
        $0.kind = "list_joined"
        $0.listID = list.id
      }
      series.steps = [
        Self.send("welcome", welcome, opens: true),
        Self.wait("two-days", seconds: 172_800),
        Self.step("opened", "branch") {
          $0.conditions = [Self.condition("engagement.welcome.opened", "eq", Google_Protobuf_Value(boolValue: true))]
          $0.thenStep = "thanks"
          $0.elseStep = "nudge"
        },
        Self.send("thanks", thanks, next: "end"),
        Self.send("nudge", nudge),
      ]

      // Bad definitions are refused naming the field.
      var backwards = series
      backwards.steps[2].thenStep = "welcome"
      await expectRefused(.invalidArgument, field: "definition.steps[2].then_step") {
        try await h.campaign.createJourney(
          .with {
            $0.name = "bad"
            $0.definition = backwards
          })
      }
      var unknownStep = series
      unknownStep.steps[2].conditions = [Self.condition("engagement.hello.opened", "eq", Google_Protobuf_Value(boolValue: true))]
      await expectRefused(.invalidArgument, field: "definition.steps[2].conditions[0].field") {
        try await h.campaign.createJourney(
          .with {
            $0.name = "bad"
            $0.definition = unknownStep
          })
      }
      var noTemplate = series
      noTemplate.steps[4].templateID = UUID().uuidString.lowercased()
      await expectRefused(.notFound, field: "definition.steps[4].template_id") {
        try await h.campaign.createJourney(
          .with {
            $0.name = "bad"
            $0.definition = noTemplate
          })
      }
      let silent = try await h.campaign.createTemplate(
        .with {
          $0.name = "no opt-out"
          $0.channel = "email"
          $0.subject = "Hi"
          $0.body = "<p>Hi</p>"
        }
      ).id
      var noOptOut = series
      noOptOut.steps[0].templateID = silent
      await expectRefused(.failedPrecondition, field: "definition.steps[0].template_id") {
        try await h.campaign.createJourney(
          .with {
            $0.name = "bad"
            $0.definition = noOptOut
          })
      }
      var bothWaits = series
      bothWaits.steps[1].untilTime = "09:00"
      await expectRefused(.invalidArgument, field: "definition.steps[1].until_time") {
        try await h.campaign.createJourney(
          .with {
            $0.name = "bad"
            $0.definition = bothWaits
          })
      }

      let journey = try await h.campaign.createJourney(
        .with {
          $0.name = "Welcome series"
          $0.definition = series
        })
      #expect(journey.status == "draft" && journey.version == 0)
      // A draft enrols no one.
      let early = try await h.person("Early", "early@example.com")
      _ = try await h.campaign.addListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [early.id]
        })
      let published = try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })
      #expect(published.status == "active" && published.version == 1)
      await expectRefused(.failedPrecondition, field: "journey_id") {
        try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })
      }

      let t0 = Date()
      let ada = try await h.person("Ada", "ada@example.com")
      let bob = try await h.person("Bob", "bob@example.com")
      _ = try await h.campaign.addListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [ada.id, bob.id]
        })
      try await h.run(at: t0)
      #expect(try await h.subjects(to: "ada@example.com", count: 1) == ["Welcome Ada"])
      #expect(try await h.subjects(to: "bob@example.com", count: 1) == ["Welcome Bob"])
      #expect(try await h.enrolments(journey.id).map(\.step) == ["two-days", "two-days"])

      // Ada opens her welcome (through its tracking pixel, as a person); Bob does not.
      let html = try #require(h.sink.messages.first { $0.to.contains("ada@example.com") }?.body)
      let pixelStart = try #require(html.range(of: "<img src=\"\(Self.publicURL)/t/o/"))
      let pixel = String(html[pixelStart.upperBound...].prefix { $0 != "\"" })
      try await eventually("the welcome e-mails marked sent") {
        try await h.count("SELECT count(*)::int FROM delivery.messages WHERE status = 'sent' AND idempotency_key LIKE 'journey:%'") == 2
      }
      let open = try await h.delivery.recordTrackingHit(
        .with {
          $0.token = pixel
          $0.kind = "open"
          $0.userAgent = Self.browser
          $0.remoteAddress = "203.0.113.7"
          $0.method = "GET"
        })
      #expect(open.recorded && !open.machine, "\(open)")
      try await eventually("the open reaches the journey's step") {
        try await h.feed.pollOnce()
        return try await h.count("SELECT count(*)::int FROM campaign.journey_steps_done WHERE opened_at IS NOT NULL") == 1
      }

      // A day later nothing is due; two days later each gets the branch's message.
      try await h.run(at: t0.addingTimeInterval(86_400))
      #expect(try await h.enrolments(journey.id).allSatisfy { $0.status == "active" && $0.step == "two-days" })
      try await h.run(at: t0.addingTimeInterval(172_800 + 60))
      #expect(try await h.subjects(to: "ada@example.com", count: 2) == ["Thanks for reading, Ada", "Welcome Ada"])
      #expect(try await h.subjects(to: "bob@example.com", count: 2) == ["Did you miss us, Bob?", "Welcome Bob"])

      let enrolments = try await h.enrolments(journey.id)
      #expect(enrolments.count == 2 && enrolments.allSatisfy { $0.status == "completed" && $0.version == 1 })
      let paths = Dictionary(uniqueKeysWithValues: enrolments.map { ($0.subscriberID, $0.path.map { "\($0.step):\($0.outcome)" }) })
      #expect(paths[ada.id] == ["welcome:sent", "two-days:waited", "opened:then", "thanks:sent"])
      #expect(paths[bob.id] == ["welcome:sent", "two-days:waited", "opened:else", "nudge:sent"])

      // Joining again does not enrol again (entry: once); every send went out once.
      _ = try await h.campaign.removeListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [ada.id]
        })
      _ = try await h.campaign.addListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [ada.id]
        })
      try await h.run(at: t0.addingTimeInterval(172_800 + 120))
      #expect(try await h.enrolments(journey.id).count == 2)
      #expect(try await h.count("SELECT count(*)::int FROM delivery.messages WHERE idempotency_key LIKE 'journey:%'") == 4)

      let analytics = try await h.campaign.getJourneyAnalytics(.with { $0.journeyID = journey.id })
      #expect(analytics.enrolled == 2 && analytics.completed == 2 && analytics.active == 0)
      let steps = Dictionary(uniqueKeysWithValues: analytics.steps.map { ($0.step, $0) })
      #expect(steps["welcome"]?.entered == 2 && steps["welcome"]?.outcomes["sent"] == 2 && steps["welcome"]?.opened == 1)
      #expect(steps["opened"]?.outcomes == ["then": 1, "else": 1])
      #expect(steps["thanks"]?.completed == 1 && steps["nudge"]?.completed == 1 && steps["nudge"]?.opened == 0)
    }
  }

  @Test func aJourneyStartedByAnEventWaitsForAnotherWithATimeout() async throws {
    try await withJourneys { h in
      let ada = try await h.person("Ada", "ada@example.com")
      _ = try await h.person("Bob", "bob@example.com")
      let vip = try await h.template("vip", subject: "A gift for a big order, {{first_name}}")
      let thanks = try await h.template("thanks", subject: "Thanks for your order, {{first_name}}")
      let remind = try await h.template("remind", subject: "Your cart misses you, {{first_name}}")
      let journey = try await h.campaign.createJourney(
        .with {
          $0.name = "Abandoned cart"
          $0.definition = .with {
            $0.trigger = .with {
              $0.kind = "event"
              $0.event = "cart_abandoned"
            }
            $0.entry = "every_time"
            $0.steps = [
              Self.step("wait-for-order", "wait_for_event") {
                $0.event = "order_placed"
                $0.timeoutSeconds = 3_600
                $0.onEventStep = "big-order"
              },
              Self.send("remind", remind, next: "end"),
              Self.step("big-order", "branch") {
                $0.conditions = [Self.condition("event.total", "gte", Google_Protobuf_Value(numberValue: 100))]
                $0.elseStep = "thanks"
              },
              Self.send("vip", vip, next: "end"),
              Self.send("thanks", thanks),
            ]
          }
        })
      _ = try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })

      // Events: refused naming the field, all or none.
      await expectRefused(.invalidArgument, field: "events[0].name") { try await h.event("herald.opened", "ada@example.com", key: "x") }
      await expectRefused(.notFound, field: "events[0].email") { try await h.event("cart_abandoned", "nobody@example.com", key: "x") }
      await expectRefused(.invalidArgument, field: "events[1].subscriber_id") {
        try await h.campaign.recordEvents(
          .with {
            $0.events = [
              .with {
                $0.name = "cart_abandoned"
                $0.email = "ada@example.com"
                $0.idempotencyKey = "ok"
              },
              .with {
                $0.name = "cart_abandoned"
                $0.idempotencyKey = "no one"
              },
            ]
          })
      }
      #expect(try await h.count("SELECT count(*)::int FROM campaign.events") == 0)

      let first = try await h.event("cart_abandoned", "ada@example.com", key: "cart-1", properties: ["cart": .init(numberValue: 1)])
      #expect(first.recorded == 1 && first.duplicates == 0)
      _ = try await h.event("cart_abandoned", "bob@example.com", key: "cart-2")
      // The same event again is a duplicate, acted on once; its key with another event is refused.
      let again = try await h.event("cart_abandoned", "ada@example.com", key: "cart-1", properties: ["cart": .init(numberValue: 1)])
      #expect(again.duplicates == 1 && again.events.first?.duplicate == true && again.events.first?.id == first.events.first?.id)
      await expectRefused(.alreadyExists, field: "events[0].idempotency_key") {
        try await h.event("order_placed", "ada@example.com", key: "cart-1")
      }
      // An order before the wait began is not the one it waits for.
      _ = try await h.event("order_placed", "bob@example.com", key: "order-0", properties: ["total": .init(numberValue: 500)])

      try await h.run(at: Date())
      var enrolments = try await h.enrolments(journey.id)
      #expect(enrolments.count == 2 && enrolments.allSatisfy { $0.status == "waiting" && $0.waitingFor == "order_placed" })

      // Ada orders for 150: the wait ends at once, and the branch reads the order's total.
      _ = try await h.event("order_placed", "ada@example.com", key: "order-1", properties: ["total": .init(numberValue: 150)])
      try await h.run(at: Date())
      #expect(try await h.subjects(to: "ada@example.com", count: 1) == ["A gift for a big order, Ada"])
      // Bob does not: an hour later his wait times out and he is reminded.
      try await h.run(at: Date().addingTimeInterval(3_660))
      #expect(try await h.subjects(to: "bob@example.com", count: 1) == ["Your cart misses you, Bob"])

      enrolments = try await h.enrolments(journey.id)
      let paths = Dictionary(uniqueKeysWithValues: enrolments.map { ($0.subscriberID, $0.path.map { "\($0.step):\($0.outcome)" }) })
      #expect(paths[ada.id] == ["wait-for-order:event", "big-order:then", "vip:sent"])
      #expect(enrolments.allSatisfy { $0.status == "completed" })
      #expect(enrolments.first { $0.subscriberID == ada.id }?.path.first?.detail.hasPrefix("order_placed") == true)

      // every_time: a new cart enrols Ada again; a small order takes the else branch.
      _ = try await h.event("cart_abandoned", "ada@example.com", key: "cart-3")
      try await h.run(at: Date())
      _ = try await h.event("order_placed", "ada@example.com", key: "order-2", properties: ["total": .init(numberValue: 20)])
      try await h.run(at: Date())
      #expect(
        try await h.subjects(to: "ada@example.com", count: 2) == ["A gift for a big order, Ada", "Thanks for your order, Ada"])
      #expect(try await h.enrolments(journey.id).count == 3)
    }
  }

  @Test func peopleExitOnUnsubscribingOrMeetingTheGoal() async throws {
    try await withJourneys { h in
      let hello = try await h.template("hello", subject: "Hello {{first_name}}")
      let tips = try await h.template("tips", subject: "Tips for {{first_name}}")
      let journey = try await h.campaign.createJourney(
        .with {
          $0.name = "Onboarding"
          $0.definition = .with {
            $0.trigger = .with {
              $0.kind = "event"
              $0.event = "signed_up"
            }
            $0.exitOnUnsubscribe = true
            $0.goalEvent = "order_placed"
            $0.steps = [Self.send("hello", hello), Self.wait("a-day", seconds: 86_400), Self.send("tips", tips)]
          }
        })
      _ = try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })
      let ada = try await h.person("Ada", "ada@example.com")
      let bob = try await h.person("Bob", "bob@example.com")
      let cy = try await h.person("Cy", "cy@example.com")
      for (index, email) in ["ada@example.com", "bob@example.com", "cy@example.com"].enumerated() {
        _ = try await h.event("signed_up", email, key: "signup-\(index)")
      }
      let t0 = Date()
      try await h.run(at: t0)
      #expect(try await h.subjects(to: "cy@example.com", count: 1) == ["Hello Cy"])

      // Ada unsubscribes through her e-mail's link; Bob orders (the goal).
      let html = try #require(
        try await {
          _ = try await h.subjects(to: "ada@example.com", count: 1)
          return h.sink.messages.first { $0.to.contains("ada@example.com") }?.body
        }())
      let linkStart = try #require(html.range(of: "\(Self.publicURL)/u/"))
      let token = String(html[linkStart.upperBound...].prefix { $0 != "\"" })
      let state = try await h.campaign.unsubscribeByLink(.with { $0.token = token })
      #expect(!state.emailSubscribed)
      _ = try await h.event("order_placed", "bob@example.com", key: "order-1")
      try await h.run(at: t0.addingTimeInterval(60))
      let bobNow = try #require(try await h.enrolments(journey.id).first { $0.subscriberID == bob.id })
      #expect(bobNow.status == "exited" && bobNow.exitReason == "goal" && bobNow.step == "a-day")

      try await h.run(at: t0.addingTimeInterval(86_400 + 60))
      #expect(try await h.subjects(to: "cy@example.com", count: 2) == ["Hello Cy", "Tips for Cy"])
      let enrolments = Dictionary(uniqueKeysWithValues: try await h.enrolments(journey.id).map { ($0.subscriberID, $0) })
      #expect(enrolments[ada.id]?.status == "exited" && enrolments[ada.id]?.exitReason == "unsubscribed")
      #expect(enrolments[cy.id]?.status == "completed")
      #expect(h.sink.messages.filter { $0.to.contains("ada@example.com") || $0.to.contains("bob@example.com") }.count == 2)
      let analytics = try await h.campaign.getJourneyAnalytics(.with { $0.journeyID = journey.id })
      #expect(analytics.exited == 2 && analytics.completed == 1)
      let tipsCounts = try #require(analytics.steps.first { $0.step == "tips" })
      let waitCounts = try #require(analytics.steps.first { $0.step == "a-day" })
      #expect(tipsCounts.entered == 2 && tipsCounts.completed == 1 && tipsCounts.exited == 1)
      #expect(waitCounts.entered == 3 && waitCounts.exited == 1 && waitCounts.completed == 2)

      // Archived: Dee's hello, recorded but not yet relayed, is skipped; no one is left in it, and
      // it cannot be resumed.
      _ = try await h.person("Dee", "dee@example.com")
      _ = try await h.event("signed_up", "dee@example.com", key: "signup-dee")
      try await h.triggers.drain(at: t0.addingTimeInterval(86_400 + 90))
      try await h.scheduler.drain(at: t0.addingTimeInterval(86_400 + 90))
      _ = try await h.event("signed_up", "ada@example.com", key: "signup-again")
      let archived = try await h.campaign.archiveJourney(.with { $0.journeyID = journey.id })
      #expect(archived.status == "archived" && archived.enrolled == 0)
      try await h.relay.drain()
      let dee = try #require(try await h.enrolments(journey.id).first { $0.exitReason == "archived" })
      #expect(dee.path.map { "\($0.step):\($0.outcome)" } == ["hello:skipped"], "\(dee.path)")
      await expectRefused(.failedPrecondition, field: "journey_id") {
        try await h.campaign.resumeJourney(.with { $0.journeyID = journey.id })
      }
      try await h.run(at: t0.addingTimeInterval(86_400 + 120))
      #expect(try await h.enrolments(journey.id).count == 4)
      #expect(!h.sink.messages.contains { $0.to.contains("dee@example.com") })
    }
  }

  @Test func aPausedJourneyWaitsAndEntryRulesAndErasureHold() async throws {
    try await withJourneys { h in
      let hi = try await h.template("hi", subject: "Hi {{first_name}}")
      let bye = try await h.template("bye", subject: "Bye {{first_name}}")
      let journey = try await h.campaign.createJourney(
        .with {
          $0.name = "Weekly"
          $0.definition = .with {
            $0.trigger = .with {
              $0.kind = "event"
              $0.event = "ping"
            }
            $0.entry = "once_per_period"
            $0.periodDays = 7
            $0.goalEvent = "stop_pinging"
            $0.steps = [Self.send("hi", hi), Self.wait("an-hour", seconds: 3_600), Self.send("bye", bye)]
          }
        })
      _ = try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })
      let ada = try await h.person("Ada", "ada@example.com")
      _ = try await h.person("Bob", "bob@example.com")
      _ = try await h.person("Cy", "cy@example.com")
      let t0 = Date()
      _ = try await h.event("ping", "ada@example.com", key: "ping-1")
      try await h.run(at: t0)
      _ = try await h.event("ping", "ada@example.com", key: "ping-2")
      try await h.run(at: t0.addingTimeInterval(60))
      #expect(try await h.enrolments(journey.id).count == 1, "a second ping within 7 days enrols again")

      // Cy pings and meets the goal in one batch: enrolled and exited at once, nothing sent.
      _ = try await h.campaign.recordEvents(
        .with {
          $0.events = [
            .with {
              $0.name = "ping"
              $0.email = "cy@example.com"
              $0.idempotencyKey = "ping-cy"
            },
            .with {
              $0.name = "stop_pinging"
              $0.email = "cy@example.com"
              $0.idempotencyKey = "stop-cy"
            },
          ]
        })
      try await h.run(at: t0.addingTimeInterval(60))
      let cy = try #require(try await h.enrolments(journey.id).first { $0.status != "active" })
      #expect(cy.status == "exited" && cy.exitReason == "goal" && cy.path.isEmpty)

      // Paused: Bob's ping enrols no one, Ada's wait ends but her next step waits for the resume.
      _ = try await h.campaign.pauseJourney(.with { $0.journeyID = journey.id })
      _ = try await h.event("ping", "bob@example.com", key: "ping-3")
      try await h.run(at: t0.addingTimeInterval(3_700))
      #expect(try await h.enrolments(journey.id).count == 2)
      #expect(try await h.enrolments(journey.id).first { $0.subscriberID == ada.id }?.path.count == 1)
      _ = try await h.campaign.resumeJourney(.with { $0.journeyID = journey.id })
      try await h.run(at: t0.addingTimeInterval(3_700))
      #expect(try await h.subjects(to: "ada@example.com", count: 2) == ["Bye Ada", "Hi Ada"])
      #expect(h.sink.messages.filter { $0.to.contains("bob@example.com") || $0.to.contains("cy@example.com") }.isEmpty)

      // Eight days on, Ada may enter again; erased while she waits, she exits and her event's
      // properties and her enrolment's context are emptied.
      _ = try await h.event("ping", "ada@example.com", key: "ping-4", properties: ["note": .init(stringValue: "private")])
      try await h.run(at: t0.addingTimeInterval(8 * 86_400))
      #expect(try await h.enrolments(journey.id).filter { $0.subscriberID == ada.id }.count == 2)
      _ = try await h.campaign.eraseSubscriber(.with { $0.id = ada.id })
      let again = try #require(try await h.enrolments(journey.id).first { $0.subscriberID == ada.id })
      #expect(again.status == "exited" && again.exitReason == "erased" && again.step == "an-hour")
      #expect(try await h.count("SELECT count(*)::int FROM campaign.events WHERE properties ? 'note'") == 0)
      #expect(try await h.count("SELECT count(*)::int FROM campaign.journey_enrolments WHERE context ? 'note'") == 0)
      // An event recorded before an erasure acts on nothing after it.
      let bob = try #require(try await h.campaign.listSubscribers(.init()).subscribers.first { $0.email == "bob@example.com" })
      _ = try await h.event("ping", "bob@example.com", key: "ping-5")
      _ = try await h.campaign.eraseSubscriber(.with { $0.id = bob.id })
      try await h.run(at: t0.addingTimeInterval(9 * 86_400))
      #expect(try await h.enrolments(journey.id).filter { $0.subscriberID == bob.id }.isEmpty)
    }
  }

  @Test func anEditMidFlightKeepsEnrolledPeopleOnTheirVersionUnlessMigrated() async throws {
    try await withJourneys { h in
      let first = try await h.template("first", subject: "First for {{first_name}}")
      let old = try await h.template("old", subject: "Old second for {{first_name}}")
      let new = try await h.template("new", subject: "New second for {{first_name}}")
      let newest = try await h.template("newest", subject: "Newest second for {{first_name}}")
      func definition(_ second: String) -> Herald_Campaign_V1_JourneyDefinition {
        .with {
          $0.trigger = .with {
            $0.kind = "event"
            $0.event = "joined"
          }
          $0.steps = [Self.send("first", first), Self.wait("a-day", seconds: 86_400), Self.send("second", second)]
        }
      }
      let journey = try await h.campaign.createJourney(
        .with {
          $0.name = "Series"
          $0.definition = definition(old)
        })
      _ = try await h.campaign.publishJourney(.with { $0.journeyID = journey.id })
      for name in ["ada", "bob", "cy"] { _ = try await h.person(name.capitalized, "\(name)@example.com") }
      let t0 = Date()
      _ = try await h.event("joined", "ada@example.com", key: "ada")
      try await h.run(at: t0)

      // The edit is version 2 at once; Ada stays on version 1, Bob enters version 2.
      let edited = try await h.campaign.updateJourney(
        .with {
          $0.journeyID = journey.id
          $0.definition = definition(new)
        })
      #expect(edited.version == 2 && edited.status == "active")
      _ = try await h.event("joined", "bob@example.com", key: "bob")
      try await h.run(at: t0)
      try await h.run(at: t0.addingTimeInterval(86_400 + 60))
      #expect(try await h.subjects(to: "ada@example.com", count: 2) == ["First for Ada", "Old second for Ada"])
      #expect(try await h.subjects(to: "bob@example.com", count: 2) == ["First for Bob", "New second for Bob"])

      // Cy enters version 2; version 3 with migrate_enrolments moves Cy, mid-wait, to it.
      _ = try await h.event("joined", "cy@example.com", key: "cy")
      let t1 = t0.addingTimeInterval(86_400 + 120)
      try await h.run(at: t1)
      let migrated = try await h.campaign.updateJourney(
        .with {
          $0.journeyID = journey.id
          $0.definition = definition(newest)
          $0.migrateEnrolments = true
        })
      #expect(migrated.version == 3)
      let cy = try #require(try await h.enrolments(journey.id).first { $0.status == "active" })
      #expect(cy.version == 3 && cy.step == "a-day")
      try await h.run(at: t1.addingTimeInterval(86_400 + 60))
      #expect(try await h.subjects(to: "cy@example.com", count: 2) == ["First for Cy", "Newest second for Cy"])
      let versions = try await h.enrolments(journey.id).map(\.version).sorted()
      #expect(versions == [1, 2, 3])
      #expect(try await h.count("SELECT count(*)::int FROM delivery.messages WHERE idempotency_key LIKE 'journey:%'") == 6)
      // Each version's steps are counted apart.
      let analytics = try await h.campaign.getJourneyAnalytics(.with { $0.journeyID = journey.id })
      #expect(analytics.steps.filter { $0.step == "second" }.map(\.completed) == [1, 1, 1])
      // An archived journey cannot be edited.
      _ = try await h.campaign.archiveJourney(.with { $0.journeyID = journey.id })
      await expectRefused(.failedPrecondition, field: "journey_id") {
        try await h.campaign.updateJourney(
          .with {
            $0.journeyID = journey.id
            $0.definition = definition(new)
          })
      }
    }
  }

  @Test func segmentEntryCampaignEngagementConversionsAndInboundMessagesEnrol() async throws {
    try await withJourneys { h in
      let hello = try await h.template("hello", subject: "Hello {{first_name}}")
      func journey(_ name: String, _ trigger: Herald_Campaign_V1_JourneyTrigger) async throws -> String {
        let created = try await h.campaign.createJourney(
          .with {
            $0.name = name
            $0.definition = .with {
              $0.trigger = trigger
              $0.steps = [Self.send("hello", hello)]
            }
          })
        _ = try await h.campaign.publishJourney(.with { $0.journeyID = created.id })
        return created.id
      }
      let ada = try await h.person("Ada", "ada@example.com")
      let bob = try await h.person("Bob", "bob@example.com")
      let cy = try await h.person("Cy", "cy@example.com")
      let dee = try await h.person("Dee", "dee@example.com")
      func enrolled(_ journey: String) async throws -> [String] { try await h.enrolments(journey).map(\.subscriberID) }

      // Segment entry: Ada is on the pro plan before the first evaluation (the baseline); Bob
      // moves to it afterwards and enters at the next evaluation, five minutes on.
      let pro = try await h.campaign.createSegment(
        .with {
          $0.name = "pro"
          $0.conditions = [
            .with {
              $0.field = "attributes.plan"
              $0.op = "eq"
              $0.value = Google_Protobuf_Value(stringValue: "pro")
            }
          ]
        })
      _ = try await h.count(
        "UPDATE campaign.subscribers SET attributes = '{\"plan\": \"pro\"}' WHERE email = 'ada@example.com' RETURNING 1")
      let proJourney = try await journey(
        "Pro welcome",
        .with {
          $0.kind = "segment_entered"
          $0.segmentID = pro.id
        })
      let watcher = SegmentWatcher(client: h.database, interval: .seconds(300), logger: Logger(label: "test.segments"))
      let t0 = Date()
      #expect(try await watcher.tick(at: t0) == 0)
      _ = try await h.count(
        "UPDATE campaign.subscribers SET attributes = '{\"plan\": \"pro\"}' WHERE email = 'bob@example.com' RETURNING 1")
      #expect(try await watcher.tick(at: t0.addingTimeInterval(60)) == 0)
      #expect(try await watcher.tick(at: t0.addingTimeInterval(301)) == 1)

      // A conversion (herald.converted).
      let buyers = try await journey(
        "Buyers",
        .with {
          $0.kind = "engagement"
          $0.engagement = "converted"
        })
      _ = try await h.campaign.recordConversions(
        .with {
          $0.conversions = [
            .with {
              $0.email = "ada@example.com"
              $0.valueCents = 4_200
              $0.currency = "USD"
              $0.idempotencyKey = "order-1"
            }
          ]
        })

      // An inbound e-mail starting with JOIN (herald.inbound, keyword JOIN).
      let joiners = try await journey(
        "Joiners",
        .with {
          $0.kind = "inbound"
          $0.keyword = "join"
        })
      let inboundBody = try JSONSerialization.data(withJSONObject: [
        "from": "Dee <dee@example.com>", "to": "news@herald.test", "subject": "Hello", "text": "join please",
        "headers": "Message-ID: <join-1@example.com>",
      ])
      let ingested = try await h.delivery.ingestInbound(
        .with {
          $0.provider = "smtp-main"
          $0.channel = "email"
          $0.body = inboundBody
          $0.contentType = "application/json"
          $0.heraldSignature = WebhookSignature.header(
            secret: "inbound-secret", timestamp: Int(Date().timeIntervalSince1970), body: inboundBody)
        })
      #expect(ingested.inbound.action == "none")
      let inbound = InboundFeedConsumer(client: h.database, source: h.deliverySink, logger: Logger(label: "test.inbound"))
      try await eventually("the inbound message taken in") { try await inbound.pollOnce() > 0 }

      // Opening a tracked campaign e-mail (herald.opened with the campaign).
      let list = try await h.campaign.createList(.with { $0.name = "news" })
      _ = try await h.campaign.addListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [cy.id]
        })
      let news = try await h.campaign.createCampaign(
        .with {
          $0.name = "news"
          $0.channel = "email"
          $0.listID = list.id
          $0.templateID = hello
          $0.tracking.opens = true
        })
      let openers = try await journey(
        "Openers",
        .with {
          $0.kind = "engagement"
          $0.engagement = "opened"
          $0.campaignID = news.id
        })
      _ = try await h.campaign.sendCampaign(.with { $0.id = news.id })
      try await OutboxRelay(
        client: h.database, sink: h.deliverySink, links: UnsubscribeLinks(publicURL: Self.publicURL, secrets: MailTests.secrets),
        tracking: TrackingLinks(publicURL: Self.publicURL, secrets: MailTests.secrets), logger: Logger(label: "test.relay")
      ).drain()
      let html = try #require(
        try await {
          _ = try await h.subjects(to: "cy@example.com", count: 1)
          return h.sink.messages.first { $0.to.contains("cy@example.com") }?.body
        }())
      let pixelStart = try #require(html.range(of: "<img src=\"\(Self.publicURL)/t/o/"))
      let pixel = String(html[pixelStart.upperBound...].prefix { $0 != "\"" })
      try await eventually("the campaign e-mail marked sent") {
        try await h.delivery.listMessages(.with { $0.campaignID = news.id }).messages.first?.status == "sent"
      }
      let open = try await h.delivery.recordTrackingHit(
        .with {
          $0.token = pixel
          $0.kind = "open"
          $0.userAgent = Self.browser
          $0.remoteAddress = "203.0.113.7"
          $0.method = "GET"
        })
      #expect(open.recorded && !open.machine)
      try await eventually("the open taken in") {
        try await h.feed.pollOnce()
        return try await h.count("SELECT count(*)::int FROM campaign.events WHERE name = 'herald.opened'") == 1
      }

      try await h.run(at: Date())
      #expect(try await enrolled(proJourney) == [bob.id])
      #expect(try await enrolled(buyers) == [ada.id])
      #expect(try await enrolled(joiners) == [dee.id])
      #expect(try await enrolled(openers) == [cy.id])
      #expect(try await h.subjects(to: "dee@example.com", count: 1) == ["Hello Dee"])
      // Events no journey listens to are not recorded: Ada's list join, Cy's delivery.
      #expect(try await h.count("SELECT count(*)::int FROM campaign.events WHERE name = 'herald.list_joined'") == 0)
    }
  }

  @Test func aWaitUntilAWeekdayEndsAtThatTimeInThePersonsZone() {
    var step = JourneyStep(id: "monday-morning", kind: "wait")
    step.untilWeekdays = ["mon"]
    step.untilTime = "09:00"
    // Thursday 2026-12-03 12:00 UTC; Tokyo is UTC+9, New York UTC-5 in December.
    let now = Date(timeIntervalSince1970: 1_796_299_200)
    let tokyo = step.waitEnd(from: now, zone: TimeZone(identifier: "Asia/Tokyo")!)
    let newYork = step.waitEnd(from: now, zone: TimeZone(identifier: "America/New_York")!)
    #expect(ISOTime.format(tokyo) == "2026-12-07T00:00:00.000Z")
    #expect(ISOTime.format(newYork) == "2026-12-07T14:00:00.000Z")
    // Any day at 09:00: later today in New York (07:00 there now), tomorrow in Tokyo (21:00 there).
    step.untilWeekdays = []
    #expect(ISOTime.format(step.waitEnd(from: now, zone: TimeZone(identifier: "America/New_York")!)) == "2026-12-03T14:00:00.000Z")
    #expect(ISOTime.format(step.waitEnd(from: now, zone: TimeZone(identifier: "Asia/Tokyo")!)) == "2026-12-04T00:00:00.000Z")
  }
}
