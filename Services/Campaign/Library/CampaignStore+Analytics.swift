import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// A campaign message's recipient, as delivery events name it.
struct FeedRecipient: Hashable, Sendable {
  var campaign: UUID
  var subscriber: UUID
}

/// One cell of a campaign's daily rollup: a variant's events of one status on one day.
struct DailyStatKey: Hashable, Sendable {
  var campaign: UUID
  var variant: String
  /// `YYYY-MM-DD` (UTC).
  var day: String
  var status: String
}

/// What a batch of events adds to one cell of the daily rollup.
struct DailyStatDelta: Sendable {
  var events: Int64 = 0
  var costCents: Int64 = 0
}

/// What a batch of events adds to one subscriber's engagement.
struct EngagementDelta: Sendable {
  var delivered: Int64 = 0
  var opened: Int64 = 0
  var clicked: Int64 = 0
  var bounced: Int64 = 0
  var complained: Int64 = 0
  var replied: Int64 = 0
  var lastEvent = Date.distantPast
}

/// Analytics (SPEC §2): the delivery feed's cursor, per campaign, variant and day counts and
/// cost, and each subscriber's engagement score. The feed's methods run in the consumer's
/// transaction, which holds the cursor's row lock from `lockFeedCursor` to its commit.
extension CampaignStore {
  /// Locks the feed's single row and returns its cursor (empty before the first event).
  func lockFeedCursor(on connection: PostgresConnection) async throws -> String {
    try await connection.query(
      "SELECT cursor FROM campaign.delivery_feed WHERE id = 1 FOR UPDATE", logger: logger
    ).collect().first?.decode(String.self) ?? ""
  }

  /// The variant of each recipient's outbox entry (recipients without one are left out).
  func variants(of recipients: [FeedRecipient], on connection: PostgresConnection) async throws -> [FeedRecipient: String] {
    var variants: [FeedRecipient: String] = [:]
    for try await (campaign, subscriber, variant) in try await connection.query(
      """
      SELECT o.campaign_id, o.subscriber_id, o.variant
      FROM unnest(\(recipients.map(\.campaign))::uuid[], \(recipients.map(\.subscriber))::uuid[]) AS t(campaign_id, subscriber_id)
      JOIN campaign.outbox o ON o.campaign_id = t.campaign_id AND o.subscriber_id = t.subscriber_id
      """, logger: logger
    ).decode((UUID, UUID, String).self) {
      variants[FeedRecipient(campaign: campaign, subscriber: subscriber)] = variant
    }
    return variants
  }

  /// Adds to the daily rollup; cells of campaigns this schema does not have are left out.
  func addDailyStats(_ days: [DailyStatKey: DailyStatDelta], on connection: PostgresConnection) async throws {
    guard !days.isEmpty else { return }
    let cells = Array(days)
    try await connection.query(
      """
      INSERT INTO campaign.campaign_daily_stats AS s (campaign_id, variant, day, status, events, cost_cents)
      SELECT t.campaign_id, t.variant, t.day::date, t.status, t.events, t.cost_cents
      FROM unnest(\(cells.map(\.key.campaign))::uuid[], \(cells.map(\.key.variant))::text[], \(cells.map(\.key.day))::text[],
        \(cells.map(\.key.status))::text[], \(cells.map(\.value.events))::int8[], \(cells.map(\.value.costCents))::int8[])
        AS t(campaign_id, variant, day, status, events, cost_cents)
      WHERE EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = t.campaign_id)
      ON CONFLICT (campaign_id, variant, day, status) DO UPDATE
        SET events = s.events + excluded.events, cost_cents = s.cost_cents + excluded.cost_cents
      """, logger: logger)
  }

  /// Adds to subscribers' engagement and scores them again; subscribers this schema does not
  /// have are left out.
  func addEngagement(_ engagement: [UUID: EngagementDelta], on connection: PostgresConnection) async throws {
    guard !engagement.isEmpty else { return }
    let ids = Array(engagement.keys)
    let entries = ids.map { engagement[$0, default: EngagementDelta()] }
    try await connection.query(
      """
      INSERT INTO campaign.subscriber_engagement AS s (
        subscriber_id, delivered, opened, clicked, bounced, complained, replied, last_event_at, last_engaged_at)
      SELECT t.id, t.delivered, t.opened, t.clicked, t.bounced, t.complained, t.replied, t.at,
        CASE WHEN t.opened + t.clicked + t.replied > 0 THEN t.at END
      FROM unnest(\(ids)::uuid[], \(entries.map(\.delivered))::int8[], \(entries.map(\.opened))::int8[],
        \(entries.map(\.clicked))::int8[], \(entries.map(\.bounced))::int8[], \(entries.map(\.complained))::int8[],
        \(entries.map(\.replied))::int8[], \(entries.map(\.lastEvent))::timestamptz[])
        AS t(id, delivered, opened, clicked, bounced, complained, replied, at)
      WHERE EXISTS (SELECT 1 FROM campaign.subscribers x WHERE x.id = t.id)
      ON CONFLICT (subscriber_id) DO UPDATE SET
        delivered = s.delivered + excluded.delivered, opened = s.opened + excluded.opened,
        clicked = s.clicked + excluded.clicked, bounced = s.bounced + excluded.bounced,
        complained = s.complained + excluded.complained, replied = s.replied + excluded.replied,
        last_event_at = greatest(s.last_event_at, excluded.last_event_at),
        last_engaged_at = greatest(s.last_engaged_at, excluded.last_engaged_at)
      """, logger: logger)
    // A reply weighs most: someone wrote back.
    try await connection.query(
      """
      UPDATE campaign.subscriber_engagement
      SET score = least(100, round(100.0 * (opened + 2 * clicked + 4 * replied) / greatest(2 * delivered, 1)))::int
      WHERE subscriber_id = ANY(\(ids)::uuid[])
      """, logger: logger)
  }

  /// Moves the feed's cursor past `applied` events.
  func advanceFeed(to cursor: String, applied: Int, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE campaign.delivery_feed SET cursor = \(cursor), events_applied = events_applied + \(applied),
        updated_at = now()
      WHERE id = 1
      """, logger: logger)
  }

  /// A campaign's daily rollup, every variant, day and status.
  package func dailyStats(of campaign: UUID) async throws -> [DailyStatRecord] {
    var stats: [DailyStatRecord] = []
    for try await (variant, day, status, events, cost) in try await client.query(
      """
      SELECT variant, to_char(day, 'YYYY-MM-DD'), status, events, cost_cents FROM campaign.campaign_daily_stats
      WHERE campaign_id = \(campaign)
      """, logger: logger
    ).decode((String, String, String, Int64, Int64).self) {
      stats.append(DailyStatRecord(variant: variant, day: day, status: status, events: events, costCents: cost))
    }
    return stats
  }

  /// When the feed last took events in.
  package func feedUpdatedAt() async throws -> Date? {
    try await client.query("SELECT updated_at FROM campaign.delivery_feed WHERE id = 1", logger: logger)
      .collect().first?.decode(Date.self)
  }

  /// The engagement rows of these subscribers (those with any delivery history).
  package func engagement(of ids: [UUID]) async throws -> [EngagementRecord] {
    guard !ids.isEmpty else { return [] }
    return try await engagement(ids: ids, limit: ids.count)
  }

  /// The smallest subscriber id, to page from the start of a score.
  package static let firstID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

  /// Engagement rows, best score first: of `ids` when given, scoring at least `minScore`, after the
  /// row `after` (score, subscriber id) in that order.
  package func engagement(
    ids: [UUID] = [], minScore: Int = 0, after: (score: Int, id: UUID) = (101, CampaignStore.firstID), limit: Int
  ) async throws -> [EngagementRecord] {
    var result: [EngagementRecord] = []
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
      result.append(
        EngagementRecord(
          subscriberID: id, score: score, delivered: delivered, opened: opened, clicked: clicked, bounced: bounced,
          complained: complained, lastEngagedAt: engagedAt, lastEventAt: eventAt))
    }
    return result
  }
}
