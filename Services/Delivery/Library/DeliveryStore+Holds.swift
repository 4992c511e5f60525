import Foundation
import HeraldPostgres
import PostgresNIO

/// Campaign holds (`delivery.campaign_holds`): a paused campaign's messages wait as `held`, a
/// cancelled one's end as `cancelled`. The queued ones move at once; one that comes back to the
/// queue later (a retry, a lease taken back, a chunk relayed meanwhile) moves when it is claimed.
/// Every move is an event in the message's history.
extension DeliveryStore {
  package enum CampaignHold: String, Sendable {
    case hold, cancel
  }

  /// Holds or cancels a campaign's messages not sent yet (a cancel is for good: a hold after it
  /// stays a cancel); returns how many moved now.
  package func hold(campaign: UUID, _ action: CampaignHold, reason: String) async throws -> Int {
    try await client.query(
      """
      WITH hold AS (
        INSERT INTO delivery.campaign_holds (campaign_id, action, reason) VALUES (\(campaign), \(action.rawValue), \(reason))
        ON CONFLICT (campaign_id) DO UPDATE SET
          action = CASE WHEN campaign_holds.action = 'cancel' THEN 'cancel' ELSE EXCLUDED.action END,
          reason = CASE WHEN campaign_holds.action = 'cancel' THEN campaign_holds.reason ELSE EXCLUDED.reason END
        RETURNING action, reason
      ), moved AS (
        UPDATE delivery.messages m SET
          status = CASE WHEN hold.action = 'cancel' THEN 'cancelled' ELSE 'held' END,
          last_error = CASE WHEN hold.action = 'cancel' THEN 'its campaign was cancelled' ELSE 'its campaign is paused' END
            || CASE WHEN hold.reason = '' THEN '' ELSE ': ' || hold.reason END,
          updated_at = now()
        FROM hold
        WHERE m.campaign_id = \(campaign) AND (m.status = 'queued' OR (m.status = 'held' AND hold.action = 'cancel'))
        RETURNING m.id, m.status, m.last_error
      ), events AS (
        -- Each message's history says so, as when a worker's claim moves one.
        INSERT INTO delivery.delivery_events (message_id, status, detail) SELECT id, status, last_error FROM moved
      )
      SELECT count(*)::int FROM moved
      """, logger: logger
    ).decode(Int.self).elements().first ?? 0
  }

  /// Releases a held campaign: its held messages go back to the queue as they were. nil when the
  /// campaign was cancelled (its messages stay cancelled).
  package func release(campaign: UUID) async throws -> Int? {
    try await transaction { connection in
      let action = try await connection.query(
        "SELECT action FROM delivery.campaign_holds WHERE campaign_id = \(campaign) FOR UPDATE", logger: logger
      ).decode(String.self).elements().first
      guard action != CampaignHold.cancel.rawValue else { return nil }
      try await connection.query("DELETE FROM delivery.campaign_holds WHERE campaign_id = \(campaign)", logger: logger)
      return try await connection.query(
        """
        WITH moved AS (
          UPDATE delivery.messages SET status = 'queued', last_error = NULL, updated_at = now()
          WHERE campaign_id = \(campaign) AND status = 'held'
          RETURNING id
        ), events AS (
          INSERT INTO delivery.delivery_events (message_id, status, detail)
          SELECT id, 'queued', 'its campaign was resumed' FROM moved
        )
        SELECT count(*)::int FROM moved
        """, logger: logger
      ).decode(Int.self).elements().first ?? 0
    }
  }
}

/// A sending domain the deliverability guard stopped (`delivery.domain_holds`).
package struct DomainHold: Sendable, Equatable {
  package var domain: String
  package var reason: String
  package var heldAt: Date
  /// nil while it holds.
  package var releasedAt: Date?
}

extension DeliveryStore {
  /// Every domain the guard stopped, held now or released since.
  package func domainHolds() async throws -> [DomainHold] {
    try await client.query(
      "SELECT domain, reason, held_at, released_at FROM delivery.domain_holds ORDER BY domain", logger: logger
    ).decode((String, String, Date, Date?).self).elements().map {
      DomainHold(domain: $0.0, reason: $0.1, heldAt: $0.2, releasedAt: $0.3)
    }
  }

  /// The domains held now.
  package func heldDomains() async throws -> [DomainHold] {
    try await domainHolds().filter { $0.releasedAt == nil }
  }

  /// Holds a domain; false when it was held already.
  package func holdDomain(_ domain: String, reason: String) async throws -> Bool {
    try await client.query(
      """
      INSERT INTO delivery.domain_holds (domain, reason) VALUES (\(domain), \(reason))
      ON CONFLICT (domain) DO UPDATE SET reason = EXCLUDED.reason, held_at = now(), released_at = NULL
      WHERE domain_holds.released_at IS NOT NULL
      RETURNING 1
      """, logger: logger
    ).decode(Int.self).elements().count == 1
  }

  /// Releases a held domain; false when it was not held.
  package func releaseDomain(_ domain: String) async throws -> Bool {
    try await client.query(
      """
      UPDATE delivery.domain_holds SET released_at = now() WHERE domain = \(domain) AND released_at IS NULL RETURNING 1
      """, logger: logger
    ).decode(Int.self).elements().count == 1
  }
}
