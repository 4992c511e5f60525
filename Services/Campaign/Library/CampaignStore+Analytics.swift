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
  /// Conversions' value (status `converted`).
  var valueCents: Int64 = 0
}

/// A campaign recipient as the feed finds them: their variant, and whether they opened or clicked
/// before (so that a first open or click is counted once).
struct TouchState: Sendable {
  var variant: String
  var opened: Bool
  var clicked: Bool
}

/// What a batch of events moves forward in a recipient's touches (attribution, SPEC §13).
struct TouchDelta: Sendable {
  var variant: String
  var deliveredAt: Date?
  /// A hard bounce: the delivery before it reached no one.
  var bouncedAt: Date?
  var openedAt: Date?
  var clickedAt: Date?
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

  /// The variant of each recipient's outbox entry (recipients without one are left out), and
  /// whether they have opened or clicked before (their touch row).
  func touchStates(of recipients: [FeedRecipient], on connection: PostgresConnection) async throws -> [FeedRecipient: TouchState] {
    var states: [FeedRecipient: TouchState] = [:]
    for try await (campaign, subscriber, variant, opened, clicked) in try await connection.query(
      """
      SELECT o.campaign_id, o.subscriber_id, o.variant, coalesce(t.opened_at IS NOT NULL, false),
        coalesce(t.clicked_at IS NOT NULL, false)
      FROM unnest(\(recipients.map(\.campaign))::uuid[], \(recipients.map(\.subscriber))::uuid[]) AS r(campaign_id, subscriber_id)
      JOIN campaign.outbox o ON o.campaign_id = r.campaign_id AND o.subscriber_id = r.subscriber_id
      LEFT JOIN campaign.campaign_touches t ON t.subscriber_id = r.subscriber_id AND t.campaign_id = r.campaign_id
      """, logger: logger
    ).decode((UUID, UUID, String, Bool, Bool).self) {
      states[FeedRecipient(campaign: campaign, subscriber: subscriber)] = TouchState(variant: variant, opened: opened, clicked: clicked)
    }
    return states
  }

  /// Moves recipients' last delivery, hard bounce, open and click forward (never back).
  func addTouches(_ touches: [FeedRecipient: TouchDelta], on connection: PostgresConnection) async throws {
    guard !touches.isEmpty else { return }
    let cells = Array(touches)
    try await connection.query(
      """
      INSERT INTO campaign.campaign_touches AS t (
        subscriber_id, campaign_id, variant, delivered_at, bounced_at, opened_at, clicked_at)
      SELECT r.subscriber_id, r.campaign_id, r.variant, to_timestamp(nullif(r.delivered, '')::float8),
        to_timestamp(nullif(r.bounced, '')::float8), to_timestamp(nullif(r.opened, '')::float8),
        to_timestamp(nullif(r.clicked, '')::float8)
      FROM unnest(\(cells.map(\.key.subscriber))::uuid[], \(cells.map(\.key.campaign))::uuid[], \(cells.map(\.value.variant))::text[],
        \(Self.texts(cells.map(\.value.deliveredAt)))::text[], \(Self.texts(cells.map(\.value.bouncedAt)))::text[],
        \(Self.texts(cells.map(\.value.openedAt)))::text[], \(Self.texts(cells.map(\.value.clickedAt)))::text[])
        AS r(subscriber_id, campaign_id, variant, delivered, bounced, opened, clicked)
      WHERE EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = r.campaign_id)
      ON CONFLICT (subscriber_id, campaign_id) DO UPDATE SET
        delivered_at = greatest(t.delivered_at, excluded.delivered_at), bounced_at = greatest(t.bounced_at, excluded.bounced_at),
        opened_at = greatest(t.opened_at, excluded.opened_at), clicked_at = greatest(t.clicked_at, excluded.clicked_at)
      """, logger: logger)
  }

  /// Adds to the daily rollup; cells of campaigns this schema does not have are left out. Cells
  /// are written in key order, so two writers (the feed, conversion batches) lock shared cells in
  /// the same order and never deadlock.
  func addDailyStats(_ days: [DailyStatKey: DailyStatDelta], on connection: PostgresConnection) async throws {
    guard !days.isEmpty else { return }
    let cells = days.sorted {
      ($0.key.campaign.uuidString, $0.key.variant, $0.key.day, $0.key.status)
        < ($1.key.campaign.uuidString, $1.key.variant, $1.key.day, $1.key.status)
    }
    try await connection.query(
      """
      INSERT INTO campaign.campaign_daily_stats AS s (campaign_id, variant, day, status, events, cost_cents, value_cents)
      SELECT t.campaign_id, t.variant, t.day::date, t.status, t.events, t.cost_cents, t.value_cents
      FROM unnest(\(cells.map(\.key.campaign))::uuid[], \(cells.map(\.key.variant))::text[], \(cells.map(\.key.day))::text[],
        \(cells.map(\.key.status))::text[], \(cells.map(\.value.events))::int8[], \(cells.map(\.value.costCents))::int8[],
        \(cells.map(\.value.valueCents))::int8[])
        AS t(campaign_id, variant, day, status, events, cost_cents, value_cents)
      WHERE EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = t.campaign_id)
      ON CONFLICT (campaign_id, variant, day, status) DO UPDATE
        SET events = s.events + excluded.events, cost_cents = s.cost_cents + excluded.cost_cents,
          value_cents = s.value_cents + excluded.value_cents
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
    for try await (variant, day, status, events, cost, value) in try await client.query(
      """
      SELECT variant, to_char(day, 'YYYY-MM-DD'), status, events, cost_cents, value_cents FROM campaign.campaign_daily_stats
      WHERE campaign_id = \(campaign)
      """, logger: logger
    ).decode((String, String, String, Int64, Int64, Int64).self) {
      stats.append(DailyStatRecord(variant: variant, day: day, status: status, events: events, costCents: cost, valueCents: value))
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

  /// Optional times as text for a `text[]` bind (PostgresNIO binds no arrays of optionals): `''`
  /// for nil, else seconds since 1970, read back with `to_timestamp(nullif(x, '')::float8)`.
  static func texts(_ dates: [Date?]) -> [String] {
    dates.map { $0.map { String($0.timeIntervalSince1970) } ?? "" }
  }

  /// Optional ids as text for a `text[]` bind: `''` for nil, read back with `nullif(x, '')::uuid`.
  static func texts(_ ids: [UUID?]) -> [String] {
    ids.map { $0?.lowercasedString ?? "" }
  }

  /// Optional texts for a `text[]` bind: `''` for nil (the values are never empty), read back
  /// with `nullif(x, '')`.
  static func texts(_ values: [String?]) -> [String] {
    values.map { $0 ?? "" }
  }
}
