import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization
import Testing

/// Lists, segments, the campaign status machine, the scheduler and the send (SPEC §2).
@Suite(.timeLimit(.minutes(5))) struct CampaignSendTests {
  /// A CreateCampaign request on the e-mail channel for `list` and `template` (empty: none), as
  /// `change` leaves it.
  static func campaignRequest(
    _ name: String, list: String, template: String, _ change: (inout Herald_Campaign_V1_CreateCampaignRequest) -> Void = { _ in }
  ) -> Herald_Campaign_V1_CreateCampaignRequest {
    .with {
      $0.name = name
      $0.channel = "email"
      $0.listID = list
      $0.templateID = template
      change(&$0)
    }
  }

  typealias Client = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  /// The visible opt-out every campaign e-mail's template needs (CAN-SPAM); the relays these
  /// tests build without a key fill in the default instead of a signed link.
  static let optOut = "<p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>"
  static let optOutVariable = Herald_Campaign_V1_TemplateVariable.with {
    $0.name = "unsubscribe_url"
    $0.defaultValue = "https://example.com/unsubscribe"
  }

  /// Delivery and campaign (without its background loops: the tests drive them) on one database.
  /// `prepare` runs on the empty database before the services start (and migrate it).
  func withServices(
    prepare: (PostgresClient) async throws -> Void = { _ in },
    _ body: (Client, GRPCClient<HTTP2ClientTransport.Posix>, PostgresClient) async throws -> Void
  ) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { try await prepare($0) }
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) {
      deliveryPort, _ async throws in
      var settings = CampaignSettings()
      settings.secrets = testSecrets
      try await withRunningService(
        withoutReadinessDependencies(CampaignDefinition.definition(settings: settings)), databaseURL: url,
        dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { campaign async throws in
          try await withClient(port: deliveryPort) { delivery async throws in
            try await withDatabase(url) { database async throws in
              try await body(Herald_Campaign_V1_CampaignService.Client(wrapping: campaign), delivery, database)
            }
          }
        }
      }
    }
  }

  func seed(_ count: Int, list: String, database: PostgresClient) async throws {
    try await seedSubscribers(count, list: try #require(UUID(uuidString: list)), database: database)
  }

  func emailTemplate(_ campaign: Client, name: String, greeting: String) async throws -> String {
    try await campaign.createTemplate(
      .with {
        $0.name = name
        $0.channel = "email"
        $0.subject = "\(greeting) {{first_name}}"
        $0.body = "<p>\(greeting) {{first_name}}, you are number {{n}}.</p>" + Self.optOut
        $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "n" }, Self.optOutVariable]
      }
    ).id
  }

  @Test func tenThousandRecipientsAreRelayedExactlyOnceAcrossARelayCrash() async throws {
    try await withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "everyone" })
      try await seed(10_000, list: list.id, database: database)
      let counted = try await campaign.getList(.with { $0.id = list.id })
      #expect(counted.counts.subscribers == 10_000 && counted.counts.emailSubscribed == 9_000)

      let a = try await emailTemplate(campaign, name: "A", greeting: "Hello")
      let b = try await emailTemplate(campaign, name: "B", greeting: "Hi")
      let created = try await campaign.createCampaign(
        .with {
          $0.name = "November news"
          $0.channel = "email"
          $0.listID = list.id
          $0.variants = [
            .with {
              $0.name = "A"
              $0.templateID = a
              $0.weight = 70
            },
            .with {
              $0.name = "B"
              $0.templateID = b
              $0.weight = 30
            },
          ]
          $0.budgetCents = 50_000
        })
      #expect(created.status == "draft")
      let sending = try await campaign.sendCampaign(.with { $0.id = created.id })
      #expect(sending.status == "sending")
      #expect(sending.counts.audience == 10_000 && sending.counts.outbox == 9_000 && sending.counts.skippedNoConsent == 1_000)
      // The A/B split follows the weights within ±2 %.
      let shareA = Double(sending.variants[0].recipients) / 9_000
      #expect(abs(shareA - 0.7) < 0.02, "variant A got \(shareA)")
      #expect(sending.variants.map(\.recipients).reduce(0, +) == 9_000)

      // Someone unsubscribes after the audience was expanded: the relay must skip them.
      let late = try await database.query(
        "SELECT id FROM campaign.subscribers WHERE email = 'user9999@example.com'", logger: Logger(label: "test")
      ).collect().first?.decode(UUID.self)
      _ = try await campaign.unsubscribe(
        .with {
          $0.id = late!.uuidString
          $0.channel = .email
        })

      // The first relay crashes right after delivery accepted its 7th chunk, before its commit.
      let logger = Logger(label: "test.relay")
      let crashing = InterruptingSink(inner: DeliverySink(client: delivery), crashOnCall: 7)
      let first = OutboxRelay(client: database, sink: crashing, logger: logger)
      await #expect(throws: InterruptingSink.Crash.self) {
        while try await first.relayBatch() > 0 {}
      }
      // Six chunks were settled (relayed, or skipped for the late unsubscribe if it fell among them).
      let settled = try await campaign.getCampaign(.with { $0.id = created.id }).counts
      #expect(settled.relayed + settled.skippedNoConsent - 1_000 == 6 * Int64(OutboxRelay.chunkSize))
      let lostBatch = crashing.lastBatch.withLock { $0 }
      #expect(lostBatch >= OutboxRelay.chunkSize - 1)

      // Paused: a restarted relay relays nothing; resumed: it drains the rest.
      let counting = InterruptingSink(inner: DeliverySink(client: delivery), crashOnCall: nil)
      let second = OutboxRelay(client: database, sink: counting, logger: logger)
      _ = try await campaign.pauseCampaign(.with { $0.id = created.id })
      #expect(try await second.relayBatch() == 0)
      _ = try await campaign.resumeCampaign(.with { $0.id = created.id })
      try await second.drain()

      let sent = try await campaign.getCampaign(.with { $0.id = created.id })
      #expect(sent.status == "sent")
      #expect(sent.counts.relayed == 8_999 && sent.counts.skippedNoConsent == 1_001 && sent.counts.failed == 0)
      // The batch cut short was sent again with the same keys and recognised as duplicates.
      #expect(counting.duplicates.withLock { $0 } == lostBatch)

      // Delivery holds exactly one message per consenting recipient, rendered per variant.
      let (messages, recipients, hello) = try #require(
        try await database.query(
          """
          SELECT count(*), count(DISTINCT subscriber_id), count(*) FILTER (WHERE subject LIKE 'Hello %')
          FROM delivery.messages WHERE campaign_id = \(UUID(uuidString: created.id)!)
          """, logger: logger
        ).collect().first?.decode((Int64, Int64, Int64).self))
      #expect(messages == 8_999 && recipients == 8_999)
      // Variant A's recipients got "Hello" (less the one who unsubscribed, if they were in A).
      #expect(hello == sent.variants[0].recipients || hello == sent.variants[0].recipients - 1)
      let sample = try await database.query(
        "SELECT subject, body, recipient FROM delivery.messages WHERE recipient = 'user42@example.com'", logger: logger
      ).collect().first?.decode((String, String, String).self)
      #expect(sample?.0.hasSuffix(" User42") == true && sample?.1.contains("you are number 42.") == true)
      let unsubscribed = try await database.query(
        "SELECT count(*) FROM delivery.messages WHERE recipient = 'user9999@example.com'", logger: logger
      ).collect().first?.decode(Int64.self)
      #expect(unsubscribed == 0)
    }
  }

  /// Entries queued one by one before the outbox had chunks (campaign migration 6) are cut into
  /// chunks by the upgrade and relayed once; entries settled before it keep their status and are
  /// not sent again, even where they sit between pending ones.
  /// A pause reaches the messages the relay already handed to delivery: they are held (and one
  /// that comes back to the queue afterwards is held when a worker claims it), a resume releases
  /// them, a cancel cancels them for good. Delivery's queue is driven here (no workers).
  @Test func aPauseHoldsWhatDeliveryAlreadyQueuedAndACancelCancelsIt() async throws {
    try await withServices { campaign, delivery, database in
      let logger = Logger(label: "test.holds")
      let list = try await campaign.createList(.with { $0.name = "everyone" })
      try await seed(1_000, list: list.id, database: database)
      let template = try await emailTemplate(campaign, name: "A", greeting: "Hello")
      let created = try await campaign.createCampaign(Self.campaignRequest("Holds", list: list.id, template: template))
      let id = try #require(UUID(uuidString: created.id))
      _ = try await campaign.sendCampaign(.with { $0.id = created.id })
      let sink = DeliverySink(client: delivery)
      let relay = OutboxRelay(client: database, sink: sink, logger: logger)
      while try await relay.relayBatch() > 0 {}
      let store = DeliveryStore(client: database, logger: logger)
      let holds = CampaignHoldSync(store: CampaignStore(client: database, logger: logger), sink: sink, logger: logger)
      func statuses() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        let rows = try await database.query(
          "SELECT status, count(*)::int FROM delivery.messages WHERE campaign_id = \(id) GROUP BY status", logger: logger)
        for try await (status, count) in rows.decode((String, Int).self) { counts[status] = count }
        return counts
      }
      #expect(try await statuses() == ["queued": 900])
      #expect(try await holds.syncOnce() == 0)

      // Paused: delivery holds all 900, with the reason.
      _ = try await campaign.pauseCampaign(.with { $0.id = created.id })
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["held": 900])
      #expect(try await store.queueDepth()["held"] == 900)
      #expect(try await holds.syncOnce() == 0)
      let held = try await Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery).listMessages(.with { $0.status = "held" })
      #expect(held.messages.first?.lastError == "its campaign is paused")
      // One comes back to the queue after the hold (as a retry would): the worker's claim holds it.
      try await database.query(
        """
        UPDATE delivery.messages SET status = 'queued' WHERE id = (
          SELECT id FROM delivery.messages WHERE campaign_id = \(id) LIMIT 1)
        """, logger: logger)
      let claimed = try await store.claim(limit: 10, lease: .seconds(30), token: UUID(), timeToLive: .seconds(3600))
      #expect(claimed.map(\.status) == ["held"])
      #expect(try await statuses() == ["held": 900])

      // Resumed: back in the queue, and claimed for sending.
      _ = try await campaign.resumeCampaign(.with { $0.id = created.id })
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["queued": 900])
      let sending = try await store.claim(limit: 10, lease: .seconds(30), token: UUID(), timeToLive: .seconds(3600))
      #expect(sending.count == 10 && sending.allSatisfy { $0.status == "sending" })

      // A pause and a resume before the sync runs: it tells delivery only what stands (resumed).
      _ = try await campaign.pauseCampaign(.with { $0.id = created.id })
      _ = try await campaign.resumeCampaign(.with { $0.id = created.id })
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["queued": 890, "sending": 10])

      // Everything relayed: the campaign is sent, while delivery still has its messages. A pause
      // still holds them, and a resume (sent again at once, nothing left to relay) releases them.
      try await relay.drain()
      #expect(try await campaign.getCampaign(.with { $0.id = created.id }).status == "sent")
      #expect(try await campaign.pauseCampaign(.with { $0.id = created.id }).status == "paused")
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["held": 890, "sending": 10])
      _ = try await campaign.resumeCampaign(.with { $0.id = created.id })
      try await relay.drain()
      #expect(try await campaign.getCampaign(.with { $0.id = created.id }).status == "sent")
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["queued": 890, "sending": 10])

      // Cancelled: what was not sent is cancelled for good; a release is refused naming why.
      _ = try await campaign.cancelCampaign(.with { $0.id = created.id })
      #expect(try await holds.syncOnce() == 1)
      #expect(try await statuses() == ["cancelled": 890, "sending": 10])
      let error = await #expect(throws: RPCError.self) {
        _ = try await Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery).holdCampaignMessages(
          .with {
            $0.campaignID = created.id
            $0.action = .release
          })
      }
      #expect(error?.code == .failedPrecondition && error?.message.contains("cancelled") == true)
      #expect(try await statuses() == ["cancelled": 890, "sending": 10])
    }
  }

  @Test func entriesPendingBeforeTheChunkMigrationAreRelayedOnceAfterIt() async throws {
    let campaignID = UUID()
    let logger = Logger(label: "test.upgrade")
    try await withServices(prepare: { database in
      let before = MigrationSet(schema: "campaign", migrations: Array(HeraldMigrations.campaign.migrations.prefix(5)))
      try await MigrationRunner(logger: logger).migrate(before, client: database)
      let list = UUID()
      let template = UUID()
      try await database.query("INSERT INTO campaign.lists (id, name) VALUES (\(list), 'legacy')", logger: logger)
      try await seedSubscribers(2_500, list: list, database: database)  // 2,250 consent
      try await database.query(
        """
        INSERT INTO campaign.templates (id, name, channel, format, subject, body, variables)
        VALUES (\(template), 'legacy', 'email', 'html', 'Hi {{first_name}}', '<p>Hi {{first_name}}</p>', '[{"name": "first_name"}]')
        """, logger: logger)
      try await database.query(
        """
        INSERT INTO campaign.campaigns (id, name, channel, list_id, status, audience_count, skipped_no_consent, started_at)
        VALUES (\(campaignID), 'legacy', 'email', \(list), 'sending', 2500, 250, now())
        """, logger: logger)
      try await database.query(
        """
        INSERT INTO campaign.campaign_variants (campaign_id, position, name, template_id, weight, recipients)
        VALUES (\(campaignID), 0, 'A', \(template), 1, 2250)
        """, logger: logger)
      // Every 7th entry was relayed by the old relay and the 500th, 1000th... skipped; the rest pending.
      try await database.query(
        """
        INSERT INTO campaign.outbox (campaign_id, subscriber_id, variant, status, message_id, relayed_at, error)
        SELECT \(campaignID), id, 'A',
          CASE WHEN n % 7 = 0 THEN 'relayed' WHEN n % 500 = 0 THEN 'skipped' ELSE 'pending' END,
          CASE WHEN n % 7 = 0 THEN gen_random_uuid() END, CASE WHEN n % 7 = 0 THEN now() END,
          CASE WHEN n % 7 <> 0 AND n % 500 = 0 THEN 'unsubscribed from email before the send reached them' END
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM campaign.subscribers WHERE email_subscribed) s
        """, logger: logger)
    }) { campaign, delivery, database in
      // 2,250 entries: 321 relayed, 4 skipped (500, 1000, 1500, 2000), 1,925 pending in two chunks.
      let upgraded = try await campaign.getCampaign(.with { $0.id = campaignID.uuidString }).counts
      #expect(upgraded.outbox == 2_250 && upgraded.relayed == 321 && upgraded.skippedNoConsent == 254)
      let chunks = try await database.query(
        "SELECT count(*), sum(entries)::int8 FROM campaign.outbox_chunks WHERE campaign_id = \(campaignID) AND status = 'pending'",
        logger: logger
      ).collect().first?.decode((Int64, Int64).self)
      #expect(chunks?.0 == 2 && chunks?.1 == 1_925)

      let counting = InterruptingSink(inner: DeliverySink(client: delivery), crashOnCall: nil)
      try await OutboxRelay(client: database, sink: counting, logger: logger).drain()
      let sent = try await campaign.getCampaign(.with { $0.id = campaignID.uuidString })
      #expect(sent.status == "sent")
      #expect(sent.counts.outbox == 2_250 && sent.counts.relayed == 2_246 && sent.counts.skippedNoConsent == 254)
      #expect(counting.duplicates.withLock { $0 } == 0)
      let queued = try await database.query(
        "SELECT count(*), count(DISTINCT subscriber_id) FROM delivery.messages WHERE campaign_id = \(campaignID)", logger: logger
      ).collect().first?.decode((Int64, Int64).self)
      #expect(queued?.0 == 1_925 && queued?.1 == 1_925)
      // None of them went to an entry settled before the upgrade.
      let resent = try await database.query(
        """
        SELECT count(*) FROM delivery.messages m JOIN campaign.outbox o
          ON o.campaign_id = m.campaign_id AND o.subscriber_id = m.subscriber_id
        WHERE m.campaign_id = \(campaignID) AND o.status IS NOT NULL
        """, logger: logger
      ).collect().first?.decode(Int64.self)
      #expect(resent == 0)
    }
  }

  /// A chunk of large messages is enqueued in several calls, each under gRPC's 4 MiB limit.
  @Test func aChunkOfLargeMessagesIsEnqueuedInPartsUnderTheMessageLimit() async throws {
    try await withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "long reads" })
      try await seed(700, list: list.id, database: database)  // 630 consent: one chunk
      let template = try await campaign.createTemplate(
        .with {
          $0.name = "long"
          $0.channel = "email"
          $0.subject = "A long one for {{first_name}}"
          $0.body = "<p>Dear {{first_name}},</p><p>" + String(repeating: "All work and no play. ", count: 460) + "</p>" + Self.optOut
          $0.variables = [.with { $0.name = "first_name" }, Self.optOutVariable]
        }
      ).id
      let id = try await campaign.createCampaign(
        Self.campaignRequest("long", list: list.id, template: template)
      ).id
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      let counting = InterruptingSink(inner: DeliverySink(client: delivery), crashOnCall: nil)
      try await OutboxRelay(client: database, sink: counting, logger: Logger(label: "test.relay")).drain()
      // 630 messages of about 10 KB: 6 MB in parts of at most 3 MiB.
      #expect(counting.calls.withLock { $0 } == 3)
      let sent = try await campaign.getCampaign(.with { $0.id = id })
      #expect(sent.status == "sent" && sent.counts.relayed == 630)
      let queued = try await database.query(
        "SELECT count(*) FROM delivery.messages WHERE campaign_id = \(UUID(uuidString: id)!) AND length(body) > 10000",
        logger: Logger(label: "test")
      ).collect().first?.decode(Int64.self)
      #expect(queued == 630)
    }
  }

  @Test func analyticsCountDeliveryEventsOncePerVariantAndDay() async throws {
    try await withServices { campaign, delivery, database in
      let logger = Logger(label: "test.analytics")
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await seed(100, list: list.id, database: database)  // 90 consent
      let a = try await emailTemplate(campaign, name: "A", greeting: "Hello")
      let b = try await emailTemplate(campaign, name: "B", greeting: "Hi")
      let id = try await campaign.createCampaign(
        .with {
          $0.name = "measured"
          $0.channel = "email"
          $0.listID = list.id
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
        }
      ).id
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      let sink = DeliverySink(client: delivery)
      try await OutboxRelay(client: database, sink: sink, logger: logger).drain()

      // What delivery's workers and provider webhooks record (#4): each message sent for 2 cents
      // and delivered, except numbers 91-99 which bounce; 1-30 opened, 1-10 clicked.
      try await database.query(
        """
        INSERT INTO delivery.delivery_events (message_id, status, cost_cents)
        SELECT m.id, e.status, CASE WHEN e.status = 'sent' THEN 2 ELSE 0 END
        FROM delivery.messages m
        CROSS JOIN LATERAL (SELECT substring(m.recipient FROM 'user([0-9]+)@')::int AS n) k
        CROSS JOIN LATERAL unnest(ARRAY['sent',
          CASE WHEN k.n > 90 THEN 'bounced' ELSE 'delivered' END,
          CASE WHEN k.n <= 30 THEN 'opened' END,
          CASE WHEN k.n <= 10 THEN 'clicked' END]) AS e(status)
        WHERE e.status IS NOT NULL
        """, logger: logger)

      // An event whose transaction is still open holds the feed back: nothing behind it is
      // skipped when it commits later.
      let consumer = DeliveryFeedConsumer(client: database, source: sink, logger: logger, batchSize: 50)
      let message = try #require(
        try await database.query("SELECT id FROM delivery.messages WHERE recipient = 'user1@example.com'", logger: logger)
          .collect().first?.decode(UUID.self))
      try await database.withTransaction(logger: logger) { connection in
        try await connection.query(
          "INSERT INTO delivery.delivery_events (message_id, status) VALUES (\(message), 'opened')", logger: logger)
        // A later transaction commits meanwhile.
        try await database.query(
          "INSERT INTO delivery.delivery_events (message_id, status) VALUES (\(message), 'clicked')", logger: logger)
        // The feed waits for every older transaction in the cluster (other suites run beside this
        // one), so poll until what was committed before the open transaction is in.
        func totals() async throws -> Herald_Campaign_V1_DeliveryCounts {
          try await consumer.pollOnce()
          return try await campaign.getCampaignAnalytics(.with { $0.campaignID = id }).totals
        }
        try await eventually("events before the open transaction") { try await totals().opened >= 27 }
        try await Task.sleep(for: .milliseconds(300))
        let early = try await totals()
        #expect(early.opened == 27 && early.clicked == 9, "the feed ran past an open transaction")
      }
      try await eventually("every event") {
        try await consumer.pollOnce()
        let totals = try await campaign.getCampaignAnalytics(.with { $0.campaignID = id }).totals
        return totals.opened == 28 && totals.clicked == 10
      }
      // Another replica finds nothing left to count.
      #expect(try await DeliveryFeedConsumer(client: database, source: sink, logger: logger).pollOnce() == 0)

      let analytics = try await campaign.getCampaignAnalytics(.with { $0.campaignID = id })
      let totals = analytics.totals
      #expect(totals.queued == 90 && totals.sent == 90 && totals.delivered == 81 && totals.bounced == 9)
      #expect(totals.opened == 28 && totals.clicked == 10 && totals.costCents == 180)
      #expect(analytics.skippedNoConsent == 10)
      #expect(analytics.variants.map(\.variant) == ["A", "B"])
      #expect(analytics.variants.map(\.counts.sent).reduce(0, +) == 90)
      #expect(analytics.variants.map(\.counts.queued) == (try await campaign.getCampaign(.with { $0.id = id })).variants.map(\.recipients))
      #expect(analytics.days.count == 1 && analytics.days[0].counts == totals)

      let engaged = try await campaign.listEngagement(
        .with {
          $0.minScore = 1
          $0.pageSize = 5
        })
      #expect(engaged.subscribers.count == 5 && engaged.subscribers.allSatisfy { $0.score == 100 })
      var scores: [Int32] = engaged.subscribers.map(\.score)
      var token = engaged.nextPageToken
      while !token.isEmpty {
        let page = try await campaign.listEngagement(
          .with {
            $0.minScore = 1
            $0.pageSize = 5
            $0.pageToken = token
          })
        scores += page.subscribers.map(\.score)
        token = page.nextPageToken
      }
      // 1-10 opened and clicked (100, capped), 11-30 opened (50); tenths have no consent.
      #expect(scores == Array(repeating: 100, count: 9) + Array(repeating: 50, count: 18))
      await #expect { _ = try await campaign.getCampaignAnalytics(.with { $0.campaignID = UUID().uuidString }) } throws: {
        rpcError($0) == (.notFound, "campaign_id")
      }
    }
  }

  @Test func statusMachineRejectsIllegalTransitions() async throws {
    try await withServices { campaign, _, database in
      let list = try await campaign.createList(.with { $0.name = "few" })
      try await seed(20, list: list.id, database: database)
      let template = try await emailTemplate(campaign, name: "T", greeting: "Hello")
      func make(_ name: String, channel: String = "email", template: String) async throws -> String {
        try await campaign.createCampaign(Self.campaignRequest(name, list: list.id, template: template) { $0.channel = channel }).id
      }
      let id = try await make("one", template: template)
      let transition = Herald_Campaign_V1_CampaignTransitionRequest.with { $0.id = id }
      await #expect { _ = try await campaign.pauseCampaign(transition) } throws: { rpcError($0) == (.failedPrecondition, "status") }
      await #expect { _ = try await campaign.resumeCampaign(transition) } throws: { rpcError($0) == (.failedPrecondition, "status") }
      await #expect {
        _ = try await campaign.scheduleCampaign(
          .with {
            $0.id = id
            $0.sendAt = .init(date: Date() - 60)
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "send_at")
      }
      #expect(
        try await campaign.scheduleCampaign(
          .with {
            $0.id = id
            $0.sendAt = .init(date: Date() + 3600)
          }
        ).status == "scheduled")
      await #expect {
        _ = try await campaign.scheduleCampaign(
          .with {
            $0.id = id
            $0.sendAt = .init(date: Date() + 60)
          })
      } throws: {
        rpcError($0) == (.failedPrecondition, "status")
      }
      #expect(try await campaign.sendCampaign(transition).status == "sending")
      await #expect { _ = try await campaign.sendCampaign(transition) } throws: { rpcError($0) == (.failedPrecondition, "status") }
      await #expect { _ = try await campaign.resumeCampaign(transition) } throws: { rpcError($0) == (.failedPrecondition, "status") }
      #expect(try await campaign.pauseCampaign(transition).status == "paused")
      let cancelled = try await campaign.cancelCampaign(transition)
      #expect(cancelled.status == "cancelled" && cancelled.counts.cancelled == 18 && cancelled.hasFinishedAt)
      let afterCancel: [@Sendable () async throws -> Herald_Campaign_V1_Campaign] = [
        { try await campaign.sendCampaign(transition) }, { try await campaign.pauseCampaign(transition) },
        { try await campaign.resumeCampaign(transition) }, { try await campaign.cancelCampaign(transition) },
      ]
      for call in afterCancel {
        await #expect { _ = try await call() } throws: { rpcError($0) == (.failedPrecondition, "status") }
      }
      // Push has no provider in this delivery: refused at send time, not at creation.
      let pushTemplate = try await campaign.createTemplate(
        .with {
          $0.name = "push"
          $0.channel = "push"
          $0.body = "New things"
        }
      ).id
      let push = try await make("push", channel: "push", template: pushTemplate)
      await #expect { _ = try await campaign.sendCampaign(.with { $0.id = push }) } throws: { error in
        rpcError(error) == (.failedPrecondition, "channel")
          && (error as? RPCError)?.message.hasPrefix("no provider for channel push: configure an enabled one in delivery") == true
      }
      #expect(try await campaign.getCampaign(.with { $0.id = push }).status == "draft")
      // Bad input names the field and writes nothing.
      let before = try await campaign.listCampaigns(.init()).campaigns.count
      let bad: [(Herald_Campaign_V1_CreateCampaignRequest, RPCError.Code, String)] = [
        (
          Self.campaignRequest("x", list: UUID().uuidString, template: template), .notFound, "list_id"
        ),
        (
          Self.campaignRequest("x", list: list.id, template: pushTemplate), .invalidArgument, "template_id"
        ),
        (
          Self.campaignRequest("x", list: list.id, template: ""), .invalidArgument, "template_id"
        ),
        (
          Self.campaignRequest("x", list: list.id, template: template) { $0.channel = "fax" }, .invalidArgument, "channel"
        ),
        (
          Self.campaignRequest("x", list: "", template: template), .invalidArgument, "list_id"
        ),
        (
          Self.campaignRequest("x", list: list.id, template: "") {
            $0.variants = [
              .with {
                $0.name = "A"
                $0.templateID = template
                $0.weight = 0
              }
            ]
          }, .invalidArgument, "variants[0].weight"
        ),
        (
          Self.campaignRequest("x", list: list.id, template: template) { $0.budgetCents = -1 }, .invalidArgument,
          "budget_cents"
        ),
      ]
      for (request, code, field) in bad {
        await #expect { _ = try await campaign.createCampaign(request) } throws: { rpcError($0) == (code, field) }
      }
      #expect(try await campaign.listCampaigns(.init()).campaigns.count == before)
    }
  }

  @Test func scheduledCampaignsStartOnceEvenWithTwoSchedulers() async throws {
    try await withServices { campaign, delivery, database in
      let list = try await campaign.createList(.with { $0.name = "few" })
      try await seed(30, list: list.id, database: database)
      let template = try await emailTemplate(campaign, name: "T", greeting: "Hello")
      let id = try await campaign.createCampaign(
        Self.campaignRequest("later", list: list.id, template: template)
      ).id
      _ = try await campaign.scheduleCampaign(
        .with {
          $0.id = id
          $0.sendAt = .init(date: Date() + 3600)
        })
      let pushTemplate = try await campaign.createTemplate(
        .with {
          $0.name = "push"
          $0.channel = "push"
          $0.body = "Hi"
        }
      ).id
      let push = try await campaign.createCampaign(
        .with {
          $0.name = "push"
          $0.channel = "push"
          $0.listID = list.id
          $0.templateID = pushTemplate
        }
      ).id
      _ = try await campaign.scheduleCampaign(
        .with {
          $0.id = push
          $0.sendAt = .init(date: Date() + 3600)
        })

      let logger = Logger(label: "test.scheduler")
      let links = UnsubscribeLinks(publicURL: "https://mail.example.com", secrets: testSecrets)
      let providers = DeliverySink(client: delivery)
      let replicas = [
        CampaignScheduler(client: database, links: links, providers: providers, logger: logger),
        CampaignScheduler(client: database, links: links, providers: providers, logger: logger),
      ]
      #expect(try await replicas[0].startDue() == 0)  // not due yet
      // Their time comes (moved, not waited for, so a slow machine cannot make it early).
      try await database.query(
        "UPDATE campaign.campaigns SET send_at = now() - interval '1 second' WHERE status = 'scheduled'", logger: logger)
      async let first = replicas[0].startDue()
      async let second = replicas[1].startDue()
      #expect(try await first + second == 2)
      let started = try await campaign.getCampaign(.with { $0.id = id })
      #expect(started.status == "sending" && started.counts.outbox == 27)
      let failed = try await campaign.getCampaign(.with { $0.id = push })
      #expect(failed.status == "failed" && failed.statusReason.hasPrefix("no provider for channel push"))
    }
  }

  /// What a metrics scrape reads (`herald_campaign_outbox_pending_*`, `herald_campaign_campaigns`)
  /// follows a send from its expansion to its end.
  @Test func theScrapedFiguresFollowTheOutbox() async throws {
    try await withServices { campaign, delivery, database in
      let logger = Logger(label: "test.metrics")
      let store = CampaignStore(client: database, logger: logger)
      let list = try await campaign.createList(.with { $0.name = "few" })
      try await seed(1_500, list: list.id, database: database)  // 1,350 consent: two chunks
      let template = try await emailTemplate(campaign, name: "T", greeting: "Hello")
      let id = try await campaign.createCampaign(
        Self.campaignRequest("counted", list: list.id, template: template)
      ).id
      _ = try await campaign.createCampaign(
        Self.campaignRequest("draft", list: list.id, template: template))
      #expect(try await store.pendingOutbox() == (0, 0))
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      #expect(try await store.pendingOutbox() == (2, 1_350))
      #expect(try await store.campaignCountsByStatus() == ["draft": 1, "sending": 1])

      let relay = OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger)
      #expect(try await relay.relayBatch() == 1_000)
      #expect(try await store.pendingOutbox() == (1, 350))
      try await relay.drain()
      #expect(try await store.pendingOutbox() == (0, 0))
      #expect(try await store.campaignCountsByStatus() == ["draft": 1, "sent": 1])
    }
  }

  /// The relay reads only the attributes a template uses, through PostgreSQL's jsonb operators;
  /// a preview decodes the subscriber's whole attributes object. Both render the same text.
  @Test func theRelayRendersAttributesAsThePreviewDoes() async throws {
    try await withServices { campaign, delivery, database in
      let logger = Logger(label: "test")
      let names = ["s", "i", "f", "w", "e", "big", "neg", "t", "nul", "arr", "obj", "missing", "first_name", "huge", "frac", "min"]
      let template = try await campaign.createTemplate(
        .with {
          $0.name = "values"
          $0.channel = "email"
          $0.format = "text"
          $0.subject = "values"
          // The values on the first line; the opt-out every campaign e-mail needs on the second.
          $0.body = names.map { "{{\($0)}}" }.joined(separator: "|") + "\n{{unsubscribe_url}}"
          $0.variables =
            names.map { name in
              .with {
                $0.name = name
                $0.defaultValue = "-"
              }
            } + [Self.optOutVariable]
        })
      let list = try await campaign.createList(.with { $0.name = "odd values" })
      let subscriber = try #require(
        try await database.query(
          """
          INSERT INTO campaign.subscribers (email, first_name, attributes, email_subscribed, email_consent_source, email_consented_at)
          VALUES ('values@example.com', 'Ada', '{"s": "<b>text</b> ü", "i": 42, "f": 1.5, "w": 3.0, "e": 1e3,
            "big": 9007199254740993, "neg": -0.25, "t": true, "nul": null, "arr": [1], "obj": {"a": 1}, "first_name": "ignored",
            "huge": 1e400, "frac": 12345678901234567.0, "min": -9223372036854775808.0}',
            true, 'test', now())
          RETURNING id
          """, logger: logger
        ).collect().first?.decode(UUID.self))
      try await database.query(
        "INSERT INTO campaign.list_members (list_id, subscriber_id) VALUES (\(UUID(uuidString: list.id)!), \(subscriber))", logger: logger)
      // The last three are left to JSONDecoder's judgement (too large for a Double; past 2^53
      // with a fraction; Int64.min written as a fraction): the relay must only agree with it.
      let expected = "<b>text</b> ü|42|1.5|3|1000|9007199254740993|-0.25|true|-|-|-|-|Ada|"
      let preview = try await campaign.previewTemplate(
        .with {
          $0.templateID = template.id
          $0.subscriberID = subscriber.uuidString
        })
      #expect(preview.body.hasPrefix(expected), "\(preview.body)")

      let created = try await campaign.createCampaign(
        Self.campaignRequest("values", list: list.id, template: template.id))
      _ = try await campaign.sendCampaign(.with { $0.id = created.id })
      try await OutboxRelay(client: database, sink: DeliverySink(client: delivery), logger: logger).drain()
      let body = try await database.query(
        "SELECT body FROM delivery.messages WHERE subscriber_id = \(subscriber)", logger: logger
      ).collect().first?.decode(String.self)
      #expect(body?.components(separatedBy: "\n").first == preview.body.components(separatedBy: "\n").first)
    }
  }

  @Test func previewRendersForASubscriberOrGivenValues() async throws {
    try await withServices { campaign, _, _ in
      let sms = try await campaign.createTemplate(
        .with {
          $0.name = "code"
          $0.channel = "sms"
          $0.body = "Hi {{first_name}}, your code is {{code}} — {{brand}}"
          $0.variables = [
            .with { $0.name = "first_name" }, .with { $0.name = "code" },
            .with {
              $0.name = "brand"
              $0.defaultValue = "Herald"
            },
          ]
        })
      #expect(sms.smsLength.encoding == "UCS-2")  // the em dash is not GSM-7
      let ada = try await campaign.createSubscriber(
        .with {
          $0.phone = "+447700900123"
          $0.firstName = "Ada"
        })
      let preview = try await campaign.previewTemplate(
        .with {
          $0.templateID = sms.id
          $0.subscriberID = ada.id
          $0.variables = .init(fields: ["code": .init(numberValue: 4711)])
        })
      #expect(preview.body == "Hi Ada, your code is 4711 — Herald")
      #expect(
        preview.smsLength
          == .with {
            $0.encoding = "UCS-2"
            $0.units = 34
            $0.segments = 1
          })
      await #expect {
        _ = try await campaign.previewTemplate(
          .with {
            $0.templateID = sms.id
            $0.subscriberID = ada.id
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "variables.code")
      }
      await #expect {
        _ = try await campaign.createTemplate(
          .with {
            $0.name = "undeclared"
            $0.channel = "sms"
            $0.body = "Hi {{nickname}}"
          })
      } throws: { rpcError($0) == (.invalidArgument, "body") }
      await #expect {
        _ = try await campaign.createTemplate(
          .with {
            $0.name = "code"
            $0.channel = "sms"
            $0.body = "x"
          })
      } throws: {
        rpcError($0) == (.alreadyExists, "name")
      }
      #expect(try await campaign.listTemplates(.init()).templates.map(\.name) == ["code"])
    }
  }

  @Test func segmentsFilterOnAttributesAndConsent() async throws {
    try await withServices { campaign, _, database in
      let list = try await campaign.createList(.with { $0.name = "all" })
      try await seed(100, list: list.id, database: database)  // attributes {"n": 1...100}; n % 10 == 0 without consent
      let segment = try await campaign.createSegment(
        .with {
          $0.name = "high numbers with consent"
          $0.conditions = [
            .with {
              $0.field = "attributes.n"
              $0.op = "gt"
              $0.value = .init(numberValue: 50)
            },
            .with {
              $0.field = "email_subscribed"
              $0.op = "eq"
              $0.value = .init(boolValue: true)
            },
            .with {
              $0.field = "list"
              $0.op = "eq"
              $0.value = .init(stringValue: list.id)
            },
          ]
        })
      #expect(segment.counts.subscribers == 45 && segment.counts.emailSubscribed == 45)
      let any = try await campaign.createSegment(
        .with {
          $0.name = "either"
          $0.match = "any"
          $0.conditions = [
            .with {
              $0.field = "email"
              $0.op = "eq"
              $0.value = .init(stringValue: "USER1@example.com")
            },
            .with {
              $0.field = "attributes.n"
              $0.op = "in"
              $0.value = .init(listValue: .init(values: [.init(numberValue: 2), .init(numberValue: 3), .init(numberValue: 1000)]))
            },
          ]
        })
      #expect(any.counts.subscribers == 3)
      #expect(try await campaign.getSegment(.with { $0.id = any.id }).counts.subscribers == 3)
      await #expect {
        _ = try await campaign.createSegment(
          .with {
            $0.name = "bad"
            $0.conditions = [
              .with {
                $0.field = "list"
                $0.op = "eq"
                $0.value = .init(stringValue: UUID().uuidString)
              }
            ]
          })
      } throws: { rpcError($0) == (.notFound, "conditions[0].value") }
      await #expect {
        _ = try await campaign.createSegment(
          .with {
            $0.name = "either"
            $0.conditions = [
              .with {
                $0.field = "phone"
                $0.op = "exists"
              }
            ]
          })
      } throws: { rpcError($0) == (.alreadyExists, "name") }

      // A segment is an audience: only its consenting members get the send.
      let template = try await emailTemplate(campaign, name: "T", greeting: "Hello")
      let id = try await campaign.createCampaign(
        .with {
          $0.name = "segment"
          $0.channel = "email"
          $0.segmentID = segment.id
          $0.templateID = template
        }
      ).id
      let sending = try await campaign.sendCampaign(.with { $0.id = id })
      #expect(sending.counts.audience == 45 && sending.counts.outbox == 45)

      // Members: unknown ids are refused naming them, and nothing is added.
      let other = try await campaign.createList(.with { $0.name = "other" })
      let someone = try await campaign.createSubscriber(.with { $0.email = "x@example.com" })
      await #expect {
        _ = try await campaign.addListMembers(
          .with {
            $0.listID = other.id
            $0.subscriberIds = [someone.id, UUID().uuidString]
          })
      } throws: { rpcError($0) == (.notFound, "subscriber_ids[1]") }
      #expect(try await campaign.getList(.with { $0.id = other.id }).counts.subscribers == 0)
      let added = try await campaign.addListMembers(
        .with {
          $0.listID = other.id
          $0.subscriberIds = [someone.id, someone.id]
        })
      #expect(added.changed == 1 && added.list.counts.subscribers == 1 && added.list.counts.emailSubscribed == 0)
      #expect(
        try await campaign.removeListMembers(
          .with {
            $0.listID = other.id
            $0.subscriberIds = [someone.id]
          }
        ).changed == 1)
    }
  }
}

/// Passes batches to delivery and can "crash" right after delivery accepted one: the relay's
/// transaction then rolls back as if the process had died between the enqueue and the commit.
final class InterruptingSink: MessageSink {
  struct Crash: Error {}
  let inner: any MessageSink
  let crashOnCall: Int?
  let calls = Mutex(0)
  let duplicates = Mutex(0)
  /// The size of the last batch passed on.
  let lastBatch = Mutex(0)

  init(inner: any MessageSink, crashOnCall: Int?) {
    self.inner = inner
    self.crashOnCall = crashOnCall
  }

  func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse {
    let response = try await inner.enqueue(request)
    duplicates.withLock { $0 += Int(response.duplicates) }
    lastBatch.withLock { $0 = request.messages.count }
    let call = calls.withLock {
      $0 += 1
      return $0
    }
    if call == crashOnCall { throw Crash() }
    return response
  }
}
