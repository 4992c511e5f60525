import Foundation
import HeraldPostgres
import PostgresNIO

/// What one provider's e-mail met over a window, from the events ledger.
package struct ProviderOutcomes: Sendable, Equatable {
  package var sent: Int64 = 0
  package var delivered: Int64 = 0
  package var bounced: Int64 = 0
  package var complained: Int64 = 0
  package var failed: Int64 = 0
  /// Campaign e-mails sent without a List-Unsubscribe link.
  package var campaignWithoutUnsubscribe: Int64 = 0

  package init() {}

  package static func + (a: Self, b: Self) -> Self {
    var sum = a
    sum.sent += b.sent
    sum.delivered += b.delivered
    sum.bounced += b.bounced
    sum.complained += b.complained
    sum.failed += b.failed
    sum.campaignWithoutUnsubscribe += b.campaignWithoutUnsubscribe
    return sum
  }
}

/// The deliverability report's counts (SPEC §10).
extension DeliveryStore {
  /// Each provider's outcomes since `since`, by the events written since then (one pass over
  /// them, found through the BRIN index on occurred_at).
  package func providerOutcomes(since: Date) async throws -> [String: ProviderOutcomes] {
    var outcomes: [String: ProviderOutcomes] = [:]
    let rows = try await client.query(
      """
      SELECT m.provider,
        count(*) FILTER (WHERE e.status = 'sent'), count(*) FILTER (WHERE e.status = 'delivered'),
        count(*) FILTER (WHERE e.status = 'bounced'), count(*) FILTER (WHERE e.status = 'complained'),
        count(*) FILTER (WHERE e.status = 'failed'),
        count(*) FILTER (WHERE e.status = 'sent' AND m.channel = 'email' AND m.campaign_id IS NOT NULL
          AND m.list_unsubscribe IS NULL)
      FROM delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id
      WHERE e.occurred_at >= \(since) AND e.status IN ('sent', 'delivered', 'bounced', 'complained', 'failed')
        AND m.provider IS NOT NULL
      GROUP BY m.provider
      """, logger: logger)
    for try await (provider, sent, delivered, bounced, complained, failed, withoutLink) in rows.decode(
      (String, Int64, Int64, Int64, Int64, Int64, Int64).self)
    {
      var counts = ProviderOutcomes()
      (counts.sent, counts.delivered, counts.bounced, counts.complained, counts.failed) = (sent, delivered, bounced, complained, failed)
      counts.campaignWithoutUnsubscribe = withoutLink
      outcomes[provider] = counts
    }
    return outcomes
  }

  /// Whether a hard bounce or a complaint was recorded since `since`.
  package func badNewsArrived(since: Date) async throws -> Bool {
    try await client.query(
      """
      SELECT EXISTS (SELECT 1 FROM delivery.delivery_events WHERE occurred_at >= \(since) AND status IN ('bounced', 'complained'))
      """, logger: logger
    ).decode(Bool.self).elements().first ?? false
  }
}
