import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// The events feed (ListDeliveryEvents) that the campaign service's analytics read, in
/// commit-safe order.
extension DeliveryStore {
  /// Up to `limit` events after `cursor`, with the cursor after the last of them (the same cursor
  /// when there is nothing new).
  package func events(after cursor: FeedCursor, limit: Int) async throws -> (events: [FeedEvent], next: FeedCursor) {
    // Only transactions older than every one still running are served (pg_snapshot_xmin): an
    // event can then never appear behind the cursor later.
    let rows = try await client.query(
      """
      SELECT e.txid::text, e.id, e.message_id, m.campaign_id, m.subscriber_id, e.status, coalesce(e.detail, ''),
        e.cost_cents, e.occurred_at, e.machine IS TRUE, (e.signals -> 'signals')::text,
        CASE WHEN m.channel = 'push' AND e.status = 'bounced' THEN (m.payload -> 'push' ->> 'platform') || ':' || m.recipient END
      FROM delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id
      WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
        AND (e.txid, e.id) > (\(String(cursor.transaction))::text::xid8, \(cursor.event))
      ORDER BY e.txid, e.id
      LIMIT \(limit)
      """, logger: logger)
    var events: [FeedEvent] = []
    var next = cursor
    for try await (transaction, id, message, campaign, subscriber, status, detail, cost, at, machine, signals, pushToken)
      in rows.decode((String, Int64, UUID, UUID?, UUID?, String, String, Int64, Date, Bool, String?, String?).self)
    {
      events.append(
        FeedEvent(
          id: id, messageID: message, campaignID: campaign, subscriberID: subscriber, status: status, detail: detail,
          costCents: cost, occurredAt: at, engagement: Self.engagement(machine: machine, signals: signals), refusedPushToken: pushToken))
      next = FeedCursor(transaction: UInt64(transaction) ?? cursor.transaction, event: id)
    }
    return (events, next)
  }

  /// The verdict and signals kept with a tracked open or click (`signals` is their JSON array).
  static func engagement(machine: Bool, signals: String?) -> EngagementSignals {
    let list = signals.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
    return EngagementSignals(machine: machine, signals: list)
  }
}
