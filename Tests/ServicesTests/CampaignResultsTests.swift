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

/// Campaign results (SPEC §13): snapshots on schedule and their series, conversions and their
/// attribution, ROI, and A/B tests that decide — on real PostgreSQL, time passed in.
@Suite(.timeLimit(.minutes(5))) struct CampaignResultsTests {
  typealias Client = CampaignSendTests.Client
  let send = CampaignSendTests()
  let logger = Logger(label: "test.results")

  /// A campaign over `list` with variants A and B (weights 1:1), opens and clicks tracked, as
  /// `change` leaves the request.
  func abCampaign(
    _ campaign: Client, list: String, _ change: (inout Herald_Campaign_V1_CreateCampaignRequest) -> Void = { _ in }
  ) async throws -> Herald_Campaign_V1_Campaign {
    let a = try await send.emailTemplate(campaign, name: "A \(UUID())", greeting: "Hello")
    let b = try await send.emailTemplate(campaign, name: "B \(UUID())", greeting: "Hi")
    return try await campaign.createCampaign(
      .with {
        $0.name = "results"
        $0.channel = "email"
        $0.listID = list
        $0.tracking = .with {
          $0.opens = true
          $0.clicks = true
        }
        $0.variants = [
          .with {
            $0.name = "A"
            $0.templateID = a
            $0.weight = 1
          },
          .with {
            $0.name = "B"
            $0.templateID = b
            $0.weight = 1
          },
        ]
        change(&$0)
      })
  }

  /// Delivery's events for the campaign's messages, as its workers and webhooks record them:
  /// `statuses` gives the statuses to add from each recipient's number (`k.n`, of user<n>@), variant
  /// (`k.v`) and place among the variant's recipients (`k.r`, from 1: which recipients a variant
  /// gets depends on their random ids, so equal rates are written with it).
  func record(
    _ database: PostgresClient, campaign: String, at: Date = Date(), _ statuses: String
  ) async throws {
    try await database.query(
      PostgresQuery(
        unsafeSQL: """
          INSERT INTO delivery.delivery_events (message_id, status, cost_cents, occurred_at)
          SELECT m.id, e.status, CASE WHEN e.status = 'sent' THEN 2 ELSE 0 END, $2
          FROM (
            SELECT m.id, m.recipient, o.variant, row_number() OVER (PARTITION BY o.variant ORDER BY m.id) AS r
            FROM delivery.messages m JOIN campaign.outbox o ON o.campaign_id = m.campaign_id AND o.subscriber_id = m.subscriber_id
            WHERE m.campaign_id = $1
          ) m
          CROSS JOIN LATERAL (SELECT substring(m.recipient FROM 'user([0-9]+)@')::int AS n, m.variant AS v, m.r AS r) k
          CROSS JOIN LATERAL unnest(\(statuses)) AS e(status)
          WHERE e.status IS NOT NULL
          """,
        binds: try {
          var binds = PostgresBindings()
          try binds.append(UUID(uuidString: campaign)!)
          binds.append(at)
          return binds
        }()), logger: logger)
  }

  /// Takes in every delivery event committed so far.
  func poll(_ database: PostgresClient, _ delivery: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
    let consumer = DeliveryFeedConsumer(client: database, source: DeliverySink(client: delivery), logger: logger)
    try await eventually("the feed to catch up") {
      try await consumer.pollOnce()
      let (applied, pending) = try await database.query(
        """
        SELECT (SELECT events_applied FROM campaign.delivery_feed), (SELECT count(*) FROM delivery.delivery_events)
        """, logger: logger
      ).decode((Int64, Int64).self).elements().first!
      return applied == pending
    }
  }

  /// The start of the UTC day two days after today: tests pass times from here, on bins of their own.
  static var base: Date {
    let day: Double = 86_400
    return Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / day).rounded(.down) * day + 2 * day)
  }

  @Test func snapshotsAreTakenOnScheduleAndReadAsASeries() async throws {
    try await send.withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await send.seed(100, list: list.id, database: database)  // 90 consent
      let id = try await abCampaign(campaign, list: list.id).id
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      let relay = OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger)
      while try await relay.relayBatch() > 0 {}
      try await record(database, campaign: id, "ARRAY['sent', CASE WHEN k.n <= 30 THEN 'opened' END]")
      try await poll(database, delivery)

      let snapshotter = MetricSnapshotter(client: database, logger: logger)
      let base = Self.base
      func at(_ minutes: Double) -> Date { base.addingTimeInterval(minutes * 60) }
      // Sending: every 5 minutes (the whole campaign and each variant), once per bin.
      #expect(try await snapshotter.tick(at: at(1)).rows == 3)
      #expect(try await snapshotter.tick(at: at(3)).rows == 0)
      try await record(database, campaign: id, "ARRAY[CASE WHEN k.n <= 10 THEN 'clicked' END]")
      try await poll(database, delivery)
      #expect(try await snapshotter.tick(at: at(6)).rows == 3)
      // Sent: hourly.
      try await relay.finishDrained()
      #expect(try await campaign.getCampaign(.with { $0.id = id }).status == "sent")
      #expect(try await snapshotter.tick(at: at(30)).rows == 0)
      #expect(try await snapshotter.tick(at: at(61)).rows == 3)
      // 30 days after it finished: daily; after a year: none.
      let campaignID = try #require(UUID(uuidString: id))
      try await database.query(
        "UPDATE campaign.campaigns SET finished_at = \(base) - interval '40 days' WHERE id = \(campaignID)", logger: logger)
      #expect(try await snapshotter.tick(at: at(62)).rows == 0)
      #expect(try await snapshotter.tick(at: at(24 * 60 + 1)).rows == 3)
      try await database.query(
        "UPDATE campaign.campaigns SET finished_at = \(base) - interval '400 days' WHERE id = \(campaignID)", logger: logger)
      #expect(try await snapshotter.tick(at: at(3 * 24 * 60)).rows == 0)

      // The series, a point per step: the last snapshot of each.
      let series = try await campaign.getCampaignMetrics(
        .with {
          $0.campaignID = id
          $0.from = Google_Protobuf_Timestamp(date: base)
          $0.to = Google_Protobuf_Timestamp(date: at(2 * 24 * 60))
          $0.step = "5m"
        })
      #expect(series.series.map(\.variant) == ["", "A", "B"])
      let whole = series.series[0].points
      #expect(whole.map(\.at.date) == [at(1), at(6), at(61), at(24 * 60 + 1)])
      #expect(whole[0].counters.uniqueOpened == 27 && whole[0].counters.uniqueClicked == 0)
      #expect(whole[1].counters.uniqueClicked == 9 && whole[1].counters.clicked == 9)
      #expect(whole[1].counters.sent == 90 && whole[1].counters.costCents == 180 && whole[1].counters.recipients == 90)
      #expect(whole[1].counters.audience == 100)
      // Rates with their denominators: opens of those reached, clicks of those who opened.
      #expect(whole[1].rates.open.numerator == 27 && whole[1].rates.open.denominator == 90 && whole[1].rates.open.value == 0.3)
      #expect(whole[1].rates.clickToOpen.numerator == 9 && whole[1].rates.clickToOpen.denominator == 27)
      #expect(whole[1].rates.roi.numerator == -180 && whole[1].rates.roi.denominator == 180)
      #expect(!whole[1].rates.revenuePerRecipient.hasValue || whole[1].rates.revenuePerRecipient.value == 0)
      let variants = series.series[1].points[1].counters.sent + series.series[2].points[1].counters.sent
      #expect(variants == 90)
      // Hourly: the last of the first hour is the one taken at minute 6.
      let hourly = try await campaign.getCampaignMetrics(
        .with {
          $0.campaignID = id
          $0.from = Google_Protobuf_Timestamp(date: base)
          $0.to = Google_Protobuf_Timestamp(date: at(2 * 24 * 60))
          $0.step = "1h"
        })
      #expect(hourly.series[0].points.map(\.at.date) == [at(6), at(61), at(24 * 60 + 1)])

      // Retention: 40 days on, the 5-minute points are thinned to the last of each hour.
      #expect(try await snapshotter.tick(at: at(40 * 24 * 60), thin: true).rows == 0)
      let kept = try await database.query(
        "SELECT resolution, count(*)::int8 FROM campaign.metric_snapshots WHERE campaign_id = \(campaignID) GROUP BY 1 ORDER BY 1",
        logger: logger
      ).decode((String, Int64).self).elements()
      #expect(kept.map(\.0) == ["1d", "1h"] && kept.map(\.1) == [3, 6], "\(kept)")
      // An hour later nothing more goes (each hour already has its one point); a year on, the
      // hourly points of the first day are thinned to its last.
      #expect(try await CampaignStore(client: database, logger: logger).thinSnapshots(at: at(40 * 24 * 60 + 60)) == 0)
      #expect(try await CampaignStore(client: database, logger: logger).thinSnapshots(at: at(400 * 24 * 60)) == 3)
      let left = try await database.query(
        "SELECT DISTINCT taken_at, resolution FROM campaign.metric_snapshots WHERE campaign_id = \(campaignID) ORDER BY 1",
        logger: logger
      ).decode((Date, String).self).elements()
      #expect(left.map(\.0) == [at(61), at(24 * 60 + 1)] && left.allSatisfy { $0.1 == "1d" }, "\(left)")

      // Bad requests name their field.
      await #expect {
        _ = try await campaign.getCampaignMetrics(
          .with {
            $0.campaignID = id
            $0.from = Google_Protobuf_Timestamp(date: at(10))
            $0.to = Google_Protobuf_Timestamp(date: at(5))
          })
      } throws: { rpcError($0) == (.invalidArgument, "from") }
      await #expect {
        _ = try await campaign.getCampaignMetrics(
          .with {
            $0.campaignID = id
            $0.from = Google_Protobuf_Timestamp(date: base)
            $0.to = Google_Protobuf_Timestamp(date: at(30 * 24 * 60))
            $0.step = "5m"
          })
      } throws: { rpcError($0) == (.invalidArgument, "step") }
      await #expect { _ = try await campaign.getCampaignMetrics(.with { $0.campaignID = UUID().uuidString }) } throws: {
        rpcError($0) == (.notFound, "campaign_id")
      }
    }
  }

  @Test func conversionsAreAttributedByEachRuleOnceAndROIIsExact() async throws {
    try await send.withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await send.seed(20, list: list.id, database: database)
      let id = try await abCampaign(campaign, list: list.id).id
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      // 1 clicked (and opened), 2 opened, 3 was sent to; 4 was sent to ten days ago; 7's bounced.
      let now = Date()
      try await record(
        database, campaign: id,
        """
        ARRAY[CASE WHEN k.n <> 4 THEN 'sent' END, CASE WHEN k.n <= 2 THEN 'opened' END, CASE WHEN k.n = 1 THEN 'clicked' END,
          CASE WHEN k.n = 7 THEN 'bounced' END]
        """)
      try await record(database, campaign: id, at: now.addingTimeInterval(-10 * 86_400), "ARRAY[CASE WHEN k.n = 4 THEN 'sent' END]")
      try await poll(database, delivery)

      func conversion(
        _ email: String, _ key: String, _ value: Int64, _ change: (inout Herald_Campaign_V1_ConversionInput) -> Void = { _ in }
      )
        -> Herald_Campaign_V1_ConversionInput
      {
        .with {
          $0.email = email
          $0.idempotencyKey = key
          $0.valueCents = value
          $0.currency = "USD"
          change(&$0)
        }
      }
      let batch = [
        conversion("user1@example.com", "order-1", 5_000), conversion("USER2@example.com", "order-2", 1_999),
        conversion("user3@example.com", "order-3", 1), conversion("user4@example.com", "order-4", 700),
        conversion("user5@example.com", "order-5", 300) { $0.campaignID = id }, conversion("user7@example.com", "order-7", 50),
      ]
      let answer = try await campaign.recordConversions(.with { $0.conversions = batch })
      #expect(answer.recorded == 6 && answer.duplicates == 0)
      #expect(answer.conversions.map(\.attribution) == ["last_click", "last_open", "last_delivery", "none", "given", "none"])
      #expect(answer.conversions.map(\.campaignID) == [id, id, id, "", id, ""])
      #expect(answer.conversions[0].touchedAt.date.timeIntervalSince(now) < 5)
      #expect(answer.conversions[0].variant == "A" || answer.conversions[0].variant == "B")

      // A retry is answered as recorded and counted once; the same key for another value is refused.
      let retry = try await campaign.recordConversions(.with { $0.conversions = Array(batch[0..<2]) })
      #expect(retry.duplicates == 2 && retry.recorded == 0 && retry.conversions[0].id == answer.conversions[0].id)
      await #expect {
        _ = try await campaign.recordConversions(.with { $0.conversions = [conversion("user1@example.com", "order-1", 5_001)] })
      } throws: { rpcError($0) == (.alreadyExists, "conversions[0].idempotency_key") }
      // Malformed: nothing of the batch is stored.
      for (input, code, field) in [
        (conversion("user6@example.com", "bad-1", -1), RPCError.Code.invalidArgument, "conversions[1].value_cents"),
        (conversion("nobody@example.com", "bad-2", 1), .notFound, "conversions[1].email"),
        (conversion("user6@example.com", "bad-3", 1) { $0.currency = "EUR" }, .invalidArgument, "conversions[1].currency"),
        (conversion("user6@example.com", "bad-4", 1) { $0.currency = "usd" }, .invalidArgument, "conversions[1].currency"),
        (conversion("user6@example.com", "bad-5", 1) { $0.campaignID = UUID().uuidString }, .notFound, "conversions[1].campaign_id"),
        (conversion("user6@example.com", "bad-6", 1) { $0.phone = "+14155550123" }, .invalidArgument, "conversions[1].subscriber_id"),
      ] {
        await #expect {
          _ = try await campaign.recordConversions(.with { $0.conversions = [conversion("user6@example.com", "good", 1), input] })
        } throws: { rpcError($0) == (code, field) }
      }
      let stored = try await database.query("SELECT count(*)::int8 FROM campaign.conversions", logger: logger)
        .decode(Int64.self).elements().first
      #expect(stored == 6)

      // ROI in cents: revenue 5,000 + 1,999 + 1 + 300, cost 2 cents for each of 17 sent (4 is
      // counted too: the ten-day-old send is an event of the campaign).
      let analytics = try await campaign.getCampaignAnalytics(.with { $0.campaignID = id })
      #expect(analytics.totals.conversions == 4 && analytics.totals.revenueCents == 7_300)
      #expect(analytics.totals.costCents == 36)
      #expect(analytics.rates.roi.numerator == 7_300 - 36 && analytics.rates.roi.denominator == 36)
      #expect(analytics.rates.revenuePerRecipient.numerator == 7_300 && analytics.rates.revenuePerRecipient.denominator == 18)
      #expect(analytics.currency == "USD")
      #expect(analytics.variants.map(\.counts.revenueCents).reduce(0, +) == 7_300)
      #expect(analytics.variants.map(\.recipients).reduce(0, +) == 18)
    }
  }

  /// 1,000 subscribers, 900 consenting; a 20 % test of A and B on opens, waiting an hour.
  func runABTest(
    fallback: String = "control", opens: String,
    _ check: (Client, GRPCClient<HTTP2ClientTransport.Posix>, PostgresClient, String) async throws -> Void
  ) async throws {
    try await send.withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await send.seed(1_000, list: list.id, database: database)
      let created = try await abCampaign(campaign, list: list.id) {
        $0.abTest = .with {
          $0.testPercent = 20
          $0.waitMinutes = 60
          $0.metric = "open"
          $0.fallback = fallback
        }
      }
      let id = created.id
      #expect(created.abTest.status == "testing" && created.abTest.settings.confidencePercent == 95)
      let started = try await campaign.sendCampaign(.with { $0.id = id })
      let test = started.counts.outbox
      #expect(test > 120 && test < 240, "about 20 % of 900: \(test)")
      #expect(started.abTest.decideAt.date.timeIntervalSinceNow > 3_500)
      let relay = OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger)
      try await relay.drain()
      // Waiting: the test share only, and the campaign is still sending.
      #expect(try await campaign.getCampaign(.with { $0.id = id }).status == "sending")
      try await record(database, campaign: id, "ARRAY['sent', \(opens)]")
      try await poll(database, delivery)
      try await check(campaign, delivery, database, id)
    }
  }

  /// Each recipient of the campaign has one message; returns the outbox by wave and variant.
  func exactlyOnce(_ database: PostgresClient, campaign id: String) async throws -> [String: Int64] {
    let campaignID = try #require(UUID(uuidString: id))
    let (messages, recipients) = try #require(
      try await database.query(
        """
        SELECT count(*)::int8, count(DISTINCT subscriber_id)::int8 FROM delivery.messages WHERE campaign_id = \(campaignID)
        """, logger: logger
      ).decode((Int64, Int64).self).elements().first)
    #expect(messages == recipients && messages == 900, "\(messages) messages to \(recipients) recipients")
    var waves: [String: Int64] = [:]
    for (wave, variant, count) in try await database.query(
      "SELECT wave, variant, count(*)::int8 FROM campaign.outbox WHERE campaign_id = \(campaignID) GROUP BY 1, 2", logger: logger
    ).decode((Int16, String, Int64).self).elements() {
      waves["\(wave):\(variant)"] = count
    }
    return waves
  }

  @Test func anABTestWithAClearWinnerSendsTheRestToIt() async throws {
    // B's recipients open half the time, A's one in ten.
    try await runABTest(opens: "CASE WHEN (k.v = 'B' AND k.n % 2 = 0) OR (k.v = 'A' AND k.n % 10 = 1) THEN 'opened' END") {
      campaign, delivery, database, id in
      let decider = ABTestDecider(client: database, logger: logger)
      #expect(try await decider.decideDue(at: Date()) == 0, "decided before the wait was over")
      #expect(try await decider.decideDue(at: Date().addingTimeInterval(3_700)) == 1)
      #expect(try await decider.decideDue(at: Date().addingTimeInterval(3_700)) == 0, "decided twice")
      let decided = try await campaign.getCampaign(.with { $0.id = id })
      let decision = decided.abTest.decision
      #expect(decided.abTest.status == "decided" && decision.outcome == "winner" && decision.winner == "B", "\(decision.reason)")
      #expect(decision.method == "two_proportion_z_test" && decision.confidence == 0.95 && decision.alpha == 0.05)
      #expect(decision.variants.map(\.variant) == ["B", "A"] && decision.variants[1].pValue < 0.05 && decision.variants[1].z > 2)
      #expect(decision.reason.contains("B wins at 95 % confidence"), "\(decision.reason)")
      let test = decision.variants.map(\.recipients).reduce(0, +)
      #expect(decision.restRecipients == 900 - test)

      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      #expect(try await campaign.getCampaign(.with { $0.id = id }).status == "sent")
      let waves = try await exactlyOnce(database, campaign: id)
      #expect(waves["1:B"] == 900 - test && waves["1:A"] == nil && (waves["0:A"] ?? 0) + (waves["0:B"] ?? 0) == test, "\(waves)")
      // The operator cannot pick any more.
      await #expect {
        _ = try await campaign.pickAbTestWinner(
          .with {
            $0.campaignID = id
            $0.variant = "A"
          })
      } throws: {
        rpcError($0) == (.failedPrecondition, "campaign_id")
      }
    }
  }

  @Test func anABTestWithoutSignificanceFallsBackToTheControl() async throws {
    try await runABTest(opens: "CASE WHEN k.r % 5 = 1 THEN 'opened' END") { campaign, delivery, database, id in
      #expect(try await ABTestDecider(client: database, logger: logger).decideDue(at: Date().addingTimeInterval(3_700)) == 1)
      let decision = try await campaign.getCampaign(.with { $0.id = id }).abTest.decision
      #expect(decision.outcome == "control" && decision.winner == "A", "\(decision.reason)")
      #expect(decision.reason.contains("no variant is better at 95 % confidence"), "\(decision.reason)")
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      let waves = try await exactlyOnce(database, campaign: id)
      #expect(waves["1:A"] == decision.restRecipients && waves["1:B"] == nil, "\(waves)")
    }
  }

  @Test func anABTestFallingBackToSplitSharesTheRestEvenly() async throws {
    try await runABTest(fallback: "split", opens: "CASE WHEN k.r % 5 = 1 THEN 'opened' END") { campaign, delivery, database, id in
      #expect(try await ABTestDecider(client: database, logger: logger).decideDue(at: Date().addingTimeInterval(3_700)) == 1)
      let decision = try await campaign.getCampaign(.with { $0.id = id }).abTest.decision
      #expect(decision.outcome == "split" && decision.winner.isEmpty, "\(decision.reason)")
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      let waves = try await exactlyOnce(database, campaign: id)
      let (a, b) = (waves["1:A"] ?? 0, waves["1:B"] ?? 0)
      #expect(a + b == decision.restRecipients && abs(a - b) < decision.restRecipients / 5, "\(waves)")
    }
  }

  @Test func anOperatorPicksTheWinnerBeforeTheWaitEnds() async throws {
    try await runABTest(opens: "NULL") { campaign, delivery, database, id in
      await #expect {
        _ = try await campaign.pickAbTestWinner(
          .with {
            $0.campaignID = id
            $0.variant = "C"
          })
      } throws: {
        rpcError($0) == (.notFound, "variant")
      }
      let picked = try await campaign.pickAbTestWinner(
        .with {
          $0.campaignID = id
          $0.variant = "B"
        })
      #expect(picked.abTest.decision.outcome == "operator" && picked.abTest.decision.winner == "B")
      #expect(try await ABTestDecider(client: database, logger: logger).decideDue(at: Date().addingTimeInterval(3_700)) == 0)
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      let waves = try await exactlyOnce(database, campaign: id)
      #expect(waves["1:B"] == picked.abTest.decision.restRecipients, "\(waves)")
      // A campaign without a test has no winner to pick.
      let list = try await campaign.createList(.with { $0.name = "other" })
      let plain = try await abCampaign(campaign, list: list.id)
      await #expect {
        _ = try await campaign.pickAbTestWinner(
          .with {
            $0.campaignID = plain.id
            $0.variant = "A"
          })
      } throws: {
        rpcError($0) == (.failedPrecondition, "campaign_id")
      }
    }
  }

  /// A scheduled test starts with its share only; paused during the wait it is snapshotted hourly
  /// and decided only once it is resumed.
  @Test func aScheduledTestPausedDuringTheWaitIsDecidedWhenResumed() async throws {
    try await send.withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await send.seed(1_000, list: list.id, database: database)
      let id = try await abCampaign(campaign, list: list.id) {
        $0.abTest = .with {
          $0.testPercent = 10
          $0.waitMinutes = 30
          $0.metric = "open"
        }
      }.id
      _ = try await campaign.scheduleCampaign(
        .with {
          $0.id = id
          $0.sendAt = .init(date: Date() + 3600)
        })
      try await database.query(
        "UPDATE campaign.campaigns SET send_at = now() - interval '1 second' WHERE status = 'scheduled'", logger: logger)
      let links = UnsubscribeLinks(publicURL: "https://mail.example.com", secrets: testSecrets)
      #expect(try await CampaignScheduler(client: database, links: links, logger: logger).startDue() == 1)
      let started = try await campaign.getCampaign(.with { $0.id = id })
      #expect(started.status == "sending" && started.counts.outbox > 50 && started.counts.outbox < 130, "\(started.counts)")
      #expect(started.abTest.decideAt.date.timeIntervalSinceNow > 1_700)
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()

      _ = try await campaign.pauseCampaign(.with { $0.id = id })
      let snapshotter = MetricSnapshotter(client: database, logger: logger)
      let base = Self.base
      #expect(try await snapshotter.tick(at: base.addingTimeInterval(60)).rows == 3)
      #expect(try await snapshotter.tick(at: base.addingTimeInterval(6 * 60)).rows == 0, "paused: hourly, not every 5 minutes")
      let decider = ABTestDecider(client: database, logger: logger)
      #expect(try await decider.decideDue(at: Date().addingTimeInterval(3_600)) == 0, "decided while paused")
      _ = try await campaign.resumeCampaign(.with { $0.id = id })
      #expect(try await decider.decideDue(at: Date().addingTimeInterval(3_600)) == 1)
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      let sent = try await campaign.getCampaign(.with { $0.id = id })
      #expect(sent.status == "sent" && sent.counts.relayed == 900, "\(sent.counts)")
    }
  }

  /// A test that cannot be decided (its segment no longer reads) stays undecided and holds up
  /// no other.
  @Test func aTestThatCannotBeDecidedHoldsUpNoOther() async throws {
    try await send.withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await send.seed(200, list: list.id, database: database)
      let segment = try await campaign.createSegment(
        .with {
          $0.name = "high numbers"
          $0.conditions = [
            .with {
              $0.field = "attributes.n"
              $0.op = "gt"
              $0.value = .init(numberValue: 100)
            }
          ]
        })
      let test = Herald_Campaign_V1_AbTestSettings.with {
        $0.testPercent = 50
        $0.waitMinutes = 1
        $0.metric = "open"
      }
      let broken = try await abCampaign(campaign, list: list.id) {
        $0.listID = ""
        $0.segmentID = segment.id
        $0.abTest = test
      }.id
      let fine = try await abCampaign(campaign, list: list.id) { $0.abTest = test }.id
      _ = try await campaign.sendCampaign(.with { $0.id = broken })
      _ = try await campaign.sendCampaign(.with { $0.id = fine })
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      try await database.query(
        "UPDATE campaign.segments SET conditions = '[{\"no\": \"such shape\"}]' WHERE id = \(UUID(uuidString: segment.id)!)",
        logger: logger)
      let decider = ABTestDecider(client: database, logger: logger)
      #expect(try await decider.decideDue(at: Date().addingTimeInterval(120)) == 1)
      #expect(try await campaign.getCampaign(.with { $0.id = fine }).abTest.status == "decided")
      #expect(try await campaign.getCampaign(.with { $0.id = broken }).abTest.status == "testing")
    }
  }

  @Test func aTestIsRefusedWhereItCannotDecide() async throws {
    try await send.withServices { campaign, _, _ in
      let list = try await campaign.createList(.with { $0.name = "all" })
      let template = try await send.emailTemplate(campaign, name: "only", greeting: "Hi")
      func refused(_ field: String, _ change: @escaping (inout Herald_Campaign_V1_CreateCampaignRequest) -> Void) async throws {
        await #expect {
          _ = try await abCampaign(campaign, list: list.id) {
            $0.abTest = .with {
              $0.testPercent = 20
              $0.waitMinutes = 60
              $0.metric = "click"
            }
            change(&$0)
          }
        } throws: { rpcError($0) == (.invalidArgument, field) }
      }
      try await refused("ab_test") {
        $0.variants = []
        $0.templateID = template
      }
      try await refused("ab_test.metric") { $0.tracking.clicks = false }
      try await refused("ab_test.metric") { $0.abTest.metric = "opens" }
      try await refused("ab_test.test_percent") { $0.abTest.testPercent = 0 }
      try await refused("ab_test.wait_minutes") { $0.abTest.waitMinutes = 50_000 }
      try await refused("ab_test.confidence_percent") { $0.abTest.confidencePercent = 50 }
      try await refused("ab_test.fallback") { $0.abTest.fallback = "coin" }
    }
  }

  /// The campaign service with its background loops (the relay, the decider), a replica of it,
  /// and a restart: the test decided once, its rest sent once.
  @Test func aRestartDuringTheWaitDecidesOnce() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) { deliveryPort, _ in
      var settings = CampaignSettings()
      settings.secrets = testSecrets
      settings.schedulerInterval = .milliseconds(200)
      var definition = CampaignDefinition.definition(settings: settings)
      definition.readinessDependencies = []
      let dependencies = ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      let id = try await withRunningService(definition, databaseURL: url, dependencies: dependencies) { port, _ in
        try await withClient(port: port) { client in
          let campaign = Client(wrapping: client)
          let list = try await campaign.createList(.with { $0.name = "all" })
          try await withDatabase(url) { try await send.seed(1_000, list: list.id, database: $0) }
          let id = try await abCampaign(campaign, list: list.id) {
            $0.abTest = .with {
              $0.testPercent = 20
              $0.waitMinutes = 60
              $0.metric = "open"
            }
          }.id
          _ = try await campaign.sendCampaign(.with { $0.id = id })
          return id
        }
      }
      // Stopped during the wait; its hour passes while no process runs.
      try await withDatabase(url) { database in
        try await database.query(
          "UPDATE campaign.ab_tests SET decide_at = now() - interval '1 second' WHERE campaign_id = \(UUID(uuidString: id)!)",
          logger: logger)
      }
      // Two replicas start: one of them decides, the relays send the rest.
      try await withRunningService(definition, databaseURL: url, dependencies: dependencies) { port, _ in
        try await withRunningService(definition, databaseURL: url, dependencies: dependencies) { _, _ in
          try await withClient(port: port) { client in
            let campaign = Client(wrapping: client)
            try await eventually("the test decided and the campaign sent") {
              try await campaign.getCampaign(.with { $0.id = id }).status == "sent"
            }
            let decided = try await campaign.getCampaign(.with { $0.id = id })
            #expect(decided.abTest.decision.outcome == "control")
            #expect(decided.counts.relayed == 900)
          }
        }
      }
      try await withDatabase(url) { database in
        _ = try await exactlyOnce(database, campaign: id)
      }
    }
  }

  @Test func theCurrencyAndWindowAreConfigured() throws {
    let euro = try ResultsSettings.load(Settings(environment: ["HERALD_CURRENCY": "EUR", "HERALD_ATTRIBUTION_WINDOW": "24h"]))
    #expect(euro.currency == "EUR" && euro.attributionWindow == .seconds(86_400))
    #expect(try ResultsSettings.load(Settings(environment: [:])) == ResultsSettings())
    for (variable, value) in [("HERALD_CURRENCY", "XYZ"), ("HERALD_CURRENCY", "eur"), ("HERALD_ATTRIBUTION_WINDOW", "10s")] {
      #expect { _ = try ResultsSettings.load(Settings(environment: [variable: value])) } throws: { "\($0)".contains(variable) }
    }
  }

  /// The decision's statistics against statsmodels 0.14 (`proportions_ztest` and
  /// `CompareMeans.ztest_ind` with unequal variances, two-sided), whose figures are written here.
  @Test func theStatisticsMatchAnIndependentImplementation() {
    for (x1, n1, x2, n2, z, p) in [
      (60, 100, 40, 100, 2.8284271247461894, 0.004677734981047275),
      (30, 500, 20, 500, 1.4509525002200232, 0.14679308730857102),
      (7, 90, 3, 90, 1.301582746911937, 0.19305906087643554),
    ] as [(Int64, Int64, Int64, Int64, Double, Double)] {
      let result = ABStatistics.twoProportion(
        ABArm(variant: "a", recipients: n1, successes: x1), ABArm(variant: "b", recipients: n2, successes: x2))
      #expect(
        abs((result?.z ?? 0) - z) < 1e-9 && abs((result?.pValue ?? 0) - p) < 1e-9,
        "\(x1)/\(n1) vs \(x2)/\(n2): \(String(describing: result))")
    }
    let welch = ABStatistics.welch(
      ABArm(variant: "a", recipients: 100, successes: 40_000, sumOfSquares: 140_000_000),
      ABArm(variant: "b", recipients: 100, successes: 13_000, sumOfSquares: 20_500_000))
    #expect(
      abs((welch?.z ?? 0) - 2.2480297374459144) < 1e-9 && abs((welch?.pValue ?? 0) - 0.02457429375930649) < 1e-9,
      "\(String(describing: welch))")
    // Nothing to tell apart: no test, not significant.
    #expect(
      ABStatistics.twoProportion(ABArm(variant: "a", recipients: 10, successes: 0), ABArm(variant: "b", recipients: 10, successes: 0))
        == nil)
    let even = ABStatistics.decide(
      metric: "open", arms: [ABArm(variant: "A", recipients: 100, successes: 10), ABArm(variant: "B", recipients: 100, successes: 10)],
      confidenceBasisPoints: 9_500, fallback: "control", at: Date())
    #expect(even.outcome == "control" && even.winner == "A")
    // Three variants: the leader must differ from both at 0.05 / 3 (every pair).
    let three = ABStatistics.decide(
      metric: "click",
      arms: [
        ABArm(variant: "A", recipients: 1_000, successes: 100), ABArm(variant: "B", recipients: 1_000, successes: 160),
        ABArm(variant: "C", recipients: 1_000, successes: 150),
      ], confidenceBasisPoints: 9_500, fallback: "split", at: Date())
    #expect(abs(three.alpha - 0.05 / 3) < 1e-15 && three.outcome == "split" && three.winner == nil, "\(three.reason)")
  }
}
