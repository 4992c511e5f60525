import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle
import SwiftProtobuf

/// Where delivery events come from: the delivery service's `ListDeliveryEvents`.
package protocol DeliveryEventSource: Sendable {
  func events(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse
}

extension DeliverySink: DeliveryEventSource {
  package func events(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse {
    try await client.listDeliveryEvents(.with {
      $0.cursor = cursor
      $0.limit = limit
    })
  }
}

/// Takes in delivery events (SPEC §2 analytics): per campaign, variant and day counts and cost,
/// and each subscriber's engagement. The cursor is kept in `campaign.delivery_feed` and moved in
/// the same transaction as the counts, under that row's lock, so every event is counted exactly
/// once however many replicas run this.
package struct DeliveryFeedConsumer: Sendable {
  package static let countedStatuses = [
    "queued", "sent", "delivered", "bounced", "failed", "opened", "clicked", "unsubscribed", "complained",
  ]
  let client: PostgresClient
  let source: any DeliveryEventSource
  let logger: Logger
  var batchSize: Int32 = 1000

  package init(client: PostgresClient, source: any DeliveryEventSource, logger: Logger, batchSize: Int32 = 1000) {
    self.client = client
    self.source = source
    self.logger = logger
    self.batchSize = batchSize
  }

  struct DayKey: Hashable {
    var campaign: UUID
    var variant: String
    var day: String
    var status: String
  }

  struct Engagement {
    var delivered: Int64 = 0
    var opened: Int64 = 0
    var clicked: Int64 = 0
    var bounced: Int64 = 0
    var complained: Int64 = 0
    var lastEvent = Date.distantPast
  }

  static let dayFormat: Date.ISO8601FormatStyle = .iso8601.year().month().day()

  /// Applies the next batch of events; returns how many it applied.
  @discardableResult
  package func pollOnce() async throws -> Int {
    let store = CampaignStore(client: client, logger: logger)
    let (logger, source, batchSize) = (self.logger, self.source, self.batchSize)
    return try await store.transaction { connection in
      let cursor = try await connection.query(
        "SELECT cursor FROM campaign.delivery_feed WHERE id = 1 FOR UPDATE", logger: logger
      ).collect().first?.decode(String.self) ?? ""
      let response = try await source.events(after: cursor, limit: batchSize)
      guard !response.events.isEmpty else { return 0 }

      // A campaign message's variant is its recipient's outbox entry's.
      struct Recipient: Hashable {
        var campaign: UUID
        var subscriber: UUID
      }
      let recipients = Array(Set(response.events.compactMap { event in
        UUID(text: event.campaignID).flatMap { campaign in
          UUID(text: event.subscriberID).map { Recipient(campaign: campaign, subscriber: $0) }
        }
      }))
      var variants: [Recipient: String] = [:]
      for try await (campaign, subscriber, variant) in try await connection.query(
        """
        SELECT o.campaign_id, o.subscriber_id, o.variant
        FROM unnest(\(recipients.map(\.campaign))::uuid[], \(recipients.map(\.subscriber))::uuid[]) AS t(campaign_id, subscriber_id)
        JOIN campaign.outbox o ON o.campaign_id = t.campaign_id AND o.subscriber_id = t.subscriber_id
        """, logger: logger
      ).decode((UUID, UUID, String).self) {
        variants[Recipient(campaign: campaign, subscriber: subscriber)] = variant
      }

      var days: [DayKey: (events: Int64, cost: Int64)] = [:]
      var engagement: [UUID: Engagement] = [:]
      for event in response.events {
        let at = event.occurredAt.date
        if let campaign = UUID(text: event.campaignID), Self.countedStatuses.contains(event.status) {
          let variant = UUID(text: event.subscriberID).flatMap { variants[Recipient(campaign: campaign, subscriber: $0)] } ?? "(unknown)"
          let key = DayKey(campaign: campaign, variant: variant, day: at.formatted(Self.dayFormat), status: event.status)
          days[key, default: (0, 0)].events += 1
          days[key, default: (0, 0)].cost += event.costCents
        }
        if let subscriber = UUID(text: event.subscriberID) {
          var entry = engagement[subscriber, default: Engagement()]
          switch event.status {
          case "delivered": entry.delivered += 1
          case "opened": entry.opened += 1
          case "clicked": entry.clicked += 1
          case "bounced": entry.bounced += 1
          case "complained": entry.complained += 1
          default: break
          }
          entry.lastEvent = max(entry.lastEvent, at)
          engagement[subscriber] = entry
        }
      }

      if !days.isEmpty {
        let keys = Array(days.keys)
        try await connection.query(
          """
          INSERT INTO campaign.campaign_daily_stats AS s (campaign_id, variant, day, status, events, cost_cents)
          SELECT t.campaign_id, t.variant, t.day::date, t.status, t.events, t.cost_cents
          FROM unnest(\(keys.map(\.campaign))::uuid[], \(keys.map(\.variant))::text[], \(keys.map(\.day))::text[],
            \(keys.map(\.status))::text[], \(keys.map { days[$0]!.events })::int8[], \(keys.map { days[$0]!.cost })::int8[])
            AS t(campaign_id, variant, day, status, events, cost_cents)
          WHERE EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = t.campaign_id)
          ON CONFLICT (campaign_id, variant, day, status) DO UPDATE
            SET events = s.events + excluded.events, cost_cents = s.cost_cents + excluded.cost_cents
          """, logger: logger)
      }
      if !engagement.isEmpty {
        let ids = Array(engagement.keys)
        let entries = ids.map { engagement[$0]! }
        try await connection.query(
          """
          INSERT INTO campaign.subscriber_engagement AS s (
            subscriber_id, delivered, opened, clicked, bounced, complained, last_event_at, last_engaged_at)
          SELECT t.id, t.delivered, t.opened, t.clicked, t.bounced, t.complained, t.at,
            CASE WHEN t.opened + t.clicked > 0 THEN t.at END
          FROM unnest(\(ids)::uuid[], \(entries.map(\.delivered))::int8[], \(entries.map(\.opened))::int8[],
            \(entries.map(\.clicked))::int8[], \(entries.map(\.bounced))::int8[], \(entries.map(\.complained))::int8[],
            \(entries.map(\.lastEvent))::timestamptz[])
            AS t(id, delivered, opened, clicked, bounced, complained, at)
          WHERE EXISTS (SELECT 1 FROM campaign.subscribers x WHERE x.id = t.id)
          ON CONFLICT (subscriber_id) DO UPDATE SET
            delivered = s.delivered + excluded.delivered, opened = s.opened + excluded.opened,
            clicked = s.clicked + excluded.clicked, bounced = s.bounced + excluded.bounced,
            complained = s.complained + excluded.complained,
            last_event_at = greatest(s.last_event_at, excluded.last_event_at),
            last_engaged_at = greatest(s.last_engaged_at, excluded.last_engaged_at)
          """, logger: logger)
        try await connection.query(
          """
          UPDATE campaign.subscriber_engagement
          SET score = least(100, round(100.0 * (opened + 2 * clicked) / greatest(2 * delivered, 1)))::int
          WHERE subscriber_id = ANY(\(ids)::uuid[])
          """, logger: logger)
      }
      try await connection.query(
        """
        UPDATE campaign.delivery_feed SET cursor = \(response.nextCursor), events_applied = events_applied + \(response.events.count),
          updated_at = now()
        WHERE id = 1
        """, logger: logger)
      return response.events.count
    }
  }

  package func run(idle: Duration = .seconds(1)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await pollOnce() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("delivery feed poll failed; will retry", metadata: ["error": "\(error.databaseMessage)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

extension CampaignService {
  package func getCampaignAnalytics(
    request: Herald_Campaign_V1_GetCampaignAnalyticsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_CampaignAnalytics {
    let id = try Self.uuid(request.campaignID, field: "campaign_id")
    let campaign: CampaignRecord
    do {
      campaign = try await campaigns.campaign(id: id)
    } catch let error as RPCError where error.code == .notFound {
      throw CampaignStore.notFound("campaign", id, field: "campaign_id")
    }
    var totals = Herald_Campaign_V1_DeliveryCounts()
    var variants: [String: Herald_Campaign_V1_DeliveryCounts] = [:]
    var days: [String: Herald_Campaign_V1_DeliveryCounts] = [:]
    for try await (variant, day, status, events, cost) in try await campaigns.client.query(
      """
      SELECT variant, to_char(day, 'YYYY-MM-DD'), status, events, cost_cents FROM campaign.campaign_daily_stats
      WHERE campaign_id = \(id)
      """, logger: campaigns.logger
    ).decode((String, String, String, Int64, Int64).self) {
      Self.add(status, events, cost, to: &totals)
      Self.add(status, events, cost, to: &variants[variant, default: .init()])
      Self.add(status, events, cost, to: &days[day, default: .init()])
    }
    var analytics = Herald_Campaign_V1_CampaignAnalytics()
    analytics.campaignID = id.lowercasedString
    analytics.totals = totals
    // Every variant of the campaign appears, in its order, even before any event.
    let known = campaign.variants.map(\.name)
    analytics.variants = (known + variants.keys.filter { !known.contains($0) }.sorted()).map { name in
      .with {
        $0.variant = name
        $0.counts = variants[name] ?? .init()
      }
    }
    analytics.days = days.keys.sorted().map { day in
      .with {
        $0.day = day
        $0.counts = days[day]!
      }
    }
    analytics.skippedNoConsent = campaign.skippedAtExpansion + (campaign.outbox["skipped"] ?? 0)
    if let updated = try await campaigns.client.query(
      "SELECT updated_at FROM campaign.delivery_feed WHERE id = 1", logger: campaigns.logger
    ).collect().first?.decode(Date.self) {
      analytics.updatedAt = Google_Protobuf_Timestamp(date: updated)
    }
    return analytics
  }

  static func add(_ status: String, _ events: Int64, _ cost: Int64, to counts: inout Herald_Campaign_V1_DeliveryCounts) {
    switch status {
    case "queued": counts.queued += events
    case "sent": counts.sent += events
    case "delivered": counts.delivered += events
    case "bounced": counts.bounced += events
    case "failed": counts.failed += events
    case "opened": counts.opened += events
    case "clicked": counts.clicked += events
    case "unsubscribed": counts.unsubscribed += events
    case "complained": counts.complained += events
    default: break
    }
    counts.costCents += cost
  }

  package func listEngagement(
    request: Herald_Campaign_V1_ListEngagementRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListEngagementResponse {
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 50)")
    }
    guard (0...100).contains(request.minScore) else {
      throw RPCError.field("min_score", .invalidArgument, "min_score must be from 0 to 100")
    }
    let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
    // The token is the last row's (score, subscriber id).
    var afterScore = 101
    var afterID = UUID(text: "00000000-0000-0000-0000-000000000000")!
    if !request.pageToken.isEmpty {
      let parts = String(decoding: Data(base64Encoded: request.pageToken) ?? Data(), as: UTF8.self).split(separator: "/")
      guard parts.count == 2, let score = Int(parts[0]), let id = UUID(text: String(parts[1])) else {
        throw RPCError.field("page_token", .invalidArgument, "page_token is not one this service gave out")
      }
      (afterScore, afterID) = (score, id)
    }
    var response = Herald_Campaign_V1_ListEngagementResponse()
    response.subscribers = try await campaigns.engagement(
      minScore: Int(request.minScore), after: (afterScore, afterID), limit: limit + 1)
    if response.subscribers.count > limit {
      response.subscribers.removeLast()
      let last = response.subscribers[limit - 1]
      response.nextPageToken = Data("\(last.score)/\(last.subscriberID)".utf8).base64EncodedString()
    }
    return response
  }
}

extension CampaignStore {
  /// The engagement rows of these subscribers (those with any delivery history).
  func engagement(of ids: [UUID]) async throws -> [Herald_Campaign_V1_SubscriberEngagement] {
    guard !ids.isEmpty else { return [] }
    return try await engagement(ids: ids, limit: ids.count)
  }

  /// Engagement rows, best score first: of `ids` when given, scoring at least `minScore`, after the
  /// row `after` (score, subscriber id) in that order.
  func engagement(
    ids: [UUID] = [], minScore: Int = 0, after: (score: Int, id: UUID) = (101, UUID(text: "00000000-0000-0000-0000-000000000000")!), limit: Int
  ) async throws -> [Herald_Campaign_V1_SubscriberEngagement] {
    var result: [Herald_Campaign_V1_SubscriberEngagement] = []
    let rows = try await client.query(
      """
      SELECT subscriber_id, score, delivered, opened, clicked, bounced, complained, last_engaged_at, last_event_at
      FROM campaign.subscriber_engagement
      WHERE (cardinality(\(ids)::uuid[]) = 0 OR subscriber_id = ANY(\(ids)::uuid[])) AND score >= \(minScore)
        AND (score < \(after.score) OR (score = \(after.score) AND subscriber_id > \(after.id)))
      ORDER BY score DESC, subscriber_id
      LIMIT \(limit)
      """, logger: logger)
    for try await (id, score, delivered, opened, clicked, bounced, complained, engagedAt, eventAt) in rows.decode(
      (UUID, Int, Int64, Int64, Int64, Int64, Int64, Date?, Date?).self)
    {
      var item = Herald_Campaign_V1_SubscriberEngagement()
      item.subscriberID = id.lowercasedString
      item.score = Int32(score)
      item.delivered = delivered
      item.opened = opened
      item.clicked = clicked
      item.bounced = bounced
      item.complained = complained
      if let engagedAt { item.lastEngagedAt = Google_Protobuf_Timestamp(date: engagedAt) }
      if let eventAt { item.lastMessagedAt = Google_Protobuf_Timestamp(date: eventAt) }
      result.append(item)
    }
    return result
  }
}
