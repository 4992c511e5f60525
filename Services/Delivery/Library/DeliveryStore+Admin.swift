import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// What operators and providers do to messages: a message with its history, messages by status
/// or campaign, requeues of dead or unknown ones, provider webhooks' events, and the suppression
/// list.
extension DeliveryStore {
  static let messageColumns = """
    id, idempotency_key, channel, recipient, campaign_id, subscriber_id, status, attempts, provider, provider_message_id,
    cost_cents, last_error, not_before, created_at, updated_at, ambiguous
    """

  static func record(_ row: PostgresRow) throws -> MessageRecord {
    let (id, key, channel, recipient, campaign, subscriber, status, attempts, provider, providerID) = try row.decode(
      (UUID, String, String, String, UUID?, UUID?, String, Int, String?, String?).self)
    let cells = row.makeRandomAccess()
    return MessageRecord(
      id: id, idempotencyKey: key, channel: channel, recipient: recipient, campaignID: campaign, subscriberID: subscriber,
      status: status, attempts: attempts, provider: provider, providerMessageID: providerID,
      costCents: try cells["cost_cents"].decode(Int64.self), lastError: try cells["last_error"].decode(String?.self),
      notBefore: try cells["not_before"].decode(Date.self), createdAt: try cells["created_at"].decode(Date.self),
      updatedAt: try cells["updated_at"].decode(Date.self), ambiguous: try cells["ambiguous"].decode(Bool.self))
  }

  /// A message with its events, oldest first; nil when no message has the id.
  package func message(_ id: UUID) async throws -> (MessageRecord, [FeedEvent])? {
    let rows = try await client.query(
      "SELECT \(unescaped: Self.messageColumns) FROM delivery.messages WHERE id = \(id)", logger: logger
    ).collect()
    guard let row = rows.first else { return nil }
    let message = try Self.record(row)
    var events: [FeedEvent] = []
    for try await (eventID, status, detail, cost, at, machine, signals) in try await client.query(
      """
      SELECT id, status, coalesce(detail, ''), cost_cents, occurred_at, machine IS TRUE, (signals -> 'signals')::text
      FROM delivery.delivery_events WHERE message_id = \(id) ORDER BY id
      """, logger: logger
    ).decode((Int64, String, String, Int64, Date, Bool, String?).self) {
      events.append(
        FeedEvent(
          id: eventID, messageID: id, campaignID: message.campaignID, subscriberID: message.subscriberID, status: status,
          detail: detail, costCents: cost, occurredAt: at, engagement: Self.engagement(machine: machine, signals: signals)))
    }
    return (message, events)
  }

  /// Newest first; the cursor is the last id of the previous page.
  package func messages(status: String?, campaign: UUID?, after cursor: UUID?, limit: Int) async throws -> [MessageRecord] {
    var records: [MessageRecord] = []
    for row in try await client.query(
      """
      SELECT \(unescaped: Self.messageColumns) FROM delivery.messages
      WHERE (\(status ?? "")::text = '' OR status = \(status ?? ""))
        AND (\(campaign?.uuidString ?? "")::text = '' OR campaign_id = nullif(\(campaign?.uuidString ?? ""), '')::uuid)
        AND (\(cursor?.uuidString ?? "")::text = '' OR id < nullif(\(cursor?.uuidString ?? ""), '')::uuid)
      ORDER BY id DESC
      LIMIT \(limit)
      """, logger: logger
    ).collect() {
      records.append(try Self.record(row))
    }
    return records
  }

  /// Puts dead or unknown messages back on the queue, attempts reset; returns how many.
  package func requeue(ids: [UUID], status: String?) async throws -> Int {
    try await client.query(
      """
      WITH requeued AS (
        UPDATE delivery.messages SET status = 'queued', attempts = 0, not_before = now(), lease_expires_at = NULL,
          lease_token = NULL, updated_at = now()
        WHERE status IN ('dead', 'unknown')
          AND (cardinality(\(ids)::uuid[]) = 0 OR id = ANY(\(ids)::uuid[]))
          AND (\(status ?? "")::text = '' OR status = \(status ?? ""))
        RETURNING id
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail)
        SELECT id, 'queued', 'requeued through the API' FROM requeued
      )
      SELECT count(*) FROM requeued
      """, logger: logger
    ).decode(Int.self).elements().first ?? 0
  }

  /// Applies a provider's webhook events in one transaction. Moves are forward only (a late
  /// "delivered" does not undo a "bounced"); hard bounces and complaints suppress the address. A
  /// soft bounce moves its message to bounced too, but its event is `soft_bounced`: it is no hard
  /// bounce for the rates and the guard.
  /// Returns the events applied, and a note for each one ignored.
  package func apply(_ events: [ProviderEvent], provider: String) async throws -> (applied: [ProviderEvent], ignored: [String]) {
    try await transaction { connection in
      var applied: [ProviderEvent] = []
      var ignored: [String] = []
      for (index, event) in events.enumerated() {
        let rows = try await connection.query(
          """
          SELECT id, status, delivery.suppression_key(channel, recipient) FROM delivery.messages
          WHERE id = nullif(\(event.messageID?.uuidString ?? ""), '')::uuid
             OR (provider = \(provider) AND provider_message_id = nullif(\(event.providerMessageID ?? ""), ''))
          LIMIT 1 FOR UPDATE
          """, logger: logger
        ).decode((UUID, String, String).self).elements()
        guard let (id, status, recipient) = rows.first else {
          ignored.append("events[\(index)]: no message \(event.messageID?.lowercasedString ?? event.providerMessageID ?? "")")
          continue
        }
        let next: String? =
          switch (event.type, status) {
          case ("delivered", "sent"), ("delivered", "unknown"): "delivered"
          case ("bounced", "sent"), ("bounced", "delivered"), ("bounced", "unknown"): "bounced"
          case ("failed", "sent"), ("failed", "unknown"): "failed"
          case ("opened", _), ("clicked", _), ("complained", _): nil  // engagement: an event, no status move
          default: "-"
          }
        if next == "-" {
          ignored.append("events[\(index)]: \(event.type) does not apply to a message that is \(status)")
          continue
        }
        if let next {
          try await connection.query(
            """
            UPDATE delivery.messages SET status = \(next), updated_at = now(),
              last_error = CASE WHEN \(next) IN ('bounced', 'failed') THEN \(event.detail) ELSE last_error END
            WHERE id = \(id)
            """, logger: logger)
        }
        try await connection.query(
          """
          INSERT INTO delivery.delivery_events (message_id, status, detail)
          VALUES (\(id), \(event.type == "bounced" && event.bounce == "soft" ? "soft_bounced" : event.type),
            \("via \(provider) webhook" + (event.detail.isEmpty ? "" : ": \(event.detail)")))
          """, logger: logger)
        if (event.type == "bounced" && event.bounce != "soft") || event.type == "complained" {
          let reason = event.type == "complained" ? "complaint" : "hard_bounce"
          try await connection.query(
            """
            INSERT INTO delivery.suppressions (address, reason, detail) VALUES (\(recipient), \(reason), \(event.detail))
            ON CONFLICT (address) DO NOTHING
            """, logger: logger)
        }
        applied.append(event)
      }
      return (applied, ignored)
    }
  }

  /// Suppressed addresses after `cursor` (the last address of the previous page), in order.
  package func suppressions(after cursor: String?, limit: Int) async throws -> [SuppressionRecord] {
    try await client.query(
      """
      SELECT address, reason, detail, created_at FROM delivery.suppressions
      WHERE address > \(cursor ?? "") ORDER BY address LIMIT \(limit)
      """, logger: logger
    ).decode((String, String, String, Date).self).elements().map { address, reason, detail, at in
      SuppressionRecord(address: address, reason: reason, detail: detail, createdAt: at)
    }
  }

  /// Suppresses an address, or changes the reason and detail of one that is suppressed; returns
  /// when it was first suppressed.
  package func addSuppression(address: String, reason: String, detail: String) async throws -> Date {
    try await client.query(
      """
      INSERT INTO delivery.suppressions (address, reason, detail) VALUES (\(address), \(reason), \(detail))
      ON CONFLICT (address) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail
      RETURNING created_at
      """, logger: logger
    ).decode(Date.self).elements().first ?? Date()
  }

  /// Whether the address was suppressed (and no longer is).
  package func removeSuppression(address: String) async throws -> Bool {
    try await client.query("DELETE FROM delivery.suppressions WHERE address = \(address) RETURNING 1", logger: logger)
      .collect().count > 0
  }
}
