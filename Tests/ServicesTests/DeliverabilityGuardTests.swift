import Foundation
import GRPCCore
import HeraldCampaign
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization
import Testing

/// The deliverability guard (SPEC §10): a sending campaign pauses itself once its complaint or
/// bounce rate passes the threshold, judged as its delivery events are taken in; verification
/// reports it and alerts.
@Suite(.timeLimit(.minutes(3))) struct DeliverabilityGuardTests {
  /// Delivery events handed to the consumer in the batches a test queues.
  final class QueuedEvents: DeliveryEventSource {
    let batches = Mutex<[[Herald_Delivery_V1_DeliveryEvent]]>([])
    let counter = Mutex<Int64>(0)

    func add(_ campaign: UUID, _ status: String, count: Int) {
      let events = (0..<count).map { _ in
        let id = counter.withLock { value -> Int64 in
          value += 1
          return value
        }
        return Herald_Delivery_V1_DeliveryEvent.with {
          $0.id = id
          $0.messageID = UUID().uuidString
          $0.campaignID = campaign.uuidString
          $0.subscriberID = UUID().uuidString
          $0.status = status
          $0.occurredAt = .init(date: Date())
        }
      }
      batches.withLock { $0.append(events) }
    }

    func events(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse {
      let next = batches.withLock { $0.isEmpty ? [] : $0.removeFirst() }
      return .with {
        $0.events = next
        $0.nextCursor = next.last.map { "0:\($0.id)" } ?? cursor
      }
    }
  }

  static let logger = Logger(label: "test.guard")

  func campaign(named name: String, database: PostgresClient) async throws -> UUID {
    let id = UUID()
    try await database.query(
      """
      WITH list AS (INSERT INTO campaign.lists (name) VALUES (\(name)) RETURNING id)
      INSERT INTO campaign.campaigns (id, name, channel, list_id, status, started_at)
      SELECT \(id), \(name), 'email', id, 'sending', now() FROM list
      """, logger: Self.logger)
    return id
  }

  func status(_ id: UUID, _ database: PostgresClient) async throws -> (String, String) {
    try await database.query("SELECT status, status_reason FROM campaign.campaigns WHERE id = \(id)", logger: Self.logger)
      .decode((String, String).self).elements().first ?? ("", "")
  }

  @Test func aCampaignPausesWhenItsComplaintOrBounceRatePassesTheThreshold() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) { _, _ async throws in
      try await withDatabase(url) { database async throws in
        let complaints = try await campaign(named: "complaints", database: database)
        let bounces = try await campaign(named: "bounces", database: database)
        let small = try await campaign(named: "small", database: database)
        let events = QueuedEvents()
        let consumer = DeliveryFeedConsumer(client: database, source: events, logger: Self.logger)

        // 1 complaint in 600 (0.17 %), 30 hard bounces in 600 (5 %, not above) and 100 soft
        // bounces (not counted), a small campaign with 10 of 100: none pauses.
        events.add(complaints, "sent", count: 600)
        events.add(complaints, "complained", count: 1)
        events.add(bounces, "sent", count: 600)
        events.add(bounces, "bounced", count: 30)
        events.add(bounces, "soft_bounced", count: 100)
        events.add(small, "sent", count: 100)
        events.add(small, "complained", count: 10)
        while try await consumer.pollOnce() > 0 {}
        for id in [complaints, bounces, small] { #expect(try await status(id, database).0 == "sending") }

        // One more of each: both pass their threshold and pause, with the figures.
        events.add(complaints, "complained", count: 1)
        events.add(bounces, "bounced", count: 1)
        while try await consumer.pollOnce() > 0 {}
        #expect(
          try await status(complaints, database)
            == ("paused", "paused by the deliverability guard: complaint rate 0.33 % (2 of 600 sent) is above 0.30 %"))
        #expect(
          try await status(bounces, database)
            == ("paused", "paused by the deliverability guard: hard-bounce rate 5.17 % (31 of 600 sent) is above 5.00 %"))
        #expect(try await status(small, database).0 == "sending")
        // Delivery is to hold what the paused campaigns already handed over (CampaignHoldSync).
        let pending = try await CampaignStore(client: database, logger: Self.logger).campaignsPendingDelivery(limit: 10)
        #expect(Set(pending.map(\.id)) == [complaints, bounces] && pending.allSatisfy { $0.status == "paused" })

        // A campaign sent (all relayed) an hour ago may still be going out: it pauses too; one
        // sent four days ago, past delivery's time to live, is left as it is.
        let recent = try await campaign(named: "recent", database: database)
        let old = try await campaign(named: "old", database: database)
        try await database.query(
          """
          UPDATE campaign.campaigns SET status = 'sent',
            finished_at = now() - CASE WHEN id = \(old) THEN interval '4 days' ELSE interval '1 hour' END
          WHERE id IN (\(recent), \(old))
          """, logger: Self.logger)
        for id in [recent, old] {
          events.add(id, "sent", count: 600)
          events.add(id, "complained", count: 3)
        }
        while try await consumer.pollOnce() > 0 {}
        #expect(try await status(recent, database).0 == "paused")
        #expect(try await status(old, database).0 == "sent")
      }
    }
  }

  @Test func verificationReportsAPausedCampaignAndAHeldDomainAndAlerts() async throws {
    try await withHTTPSink { webhookPort, alerts async throws in
      try await withVerifiedSystem(syncDown: false, alertWebhook: "http://127.0.0.1:\(webhookPort)/alerts") {
        verification, database, _ async throws in
        let id = try await campaign(named: "noisy", database: database)
        try await database.query(
          """
          UPDATE campaign.campaigns SET status = 'paused',
            status_reason = \(DeliverabilityGuard.reasonPrefix + "complaint rate 0.40 % (4 of 1000 sent) is above 0.30 %")
          WHERE id = \(id)
          """, logger: Self.logger)
        try await database.query(
          "INSERT INTO delivery.domain_holds (domain, reason) VALUES ('herald.test', 'complaint rate 0.40 %')", logger: Self.logger)
        let report = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
        let held = try #require(report.issues.first { $0.check == "data.sending_domain_held" })
        #expect(held.severity == .critical && held.sampleKeys == ["herald.test: complaint rate 0.40 %"])
        let issue = try #require(report.issues.first { $0.check == "data.campaign_paused_by_guard" })
        #expect(issue.severity == .critical && issue.count == 1)
        #expect(issue.sampleKeys == ["\(id.lowercasedString): complaint rate 0.40 % (4 of 1000 sent) is above 0.30 %"])
        try await eventually("the alert") {
          alerts.all.contains { String(decoding: $0.body, as: UTF8.self).contains("data.campaign_paused_by_guard") }
        }
      }
    }
  }
}
