import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// The inbound feed's statements (`InboundFeedConsumer`), run in the consumer's transaction, which
/// holds the cursor's row lock from `lockInboundCursor` to its commit.
extension CampaignStore {
  func lockInboundCursor(on connection: PostgresConnection) async throws -> String {
    try await connection.query(
      "SELECT cursor FROM campaign.inbound_feed WHERE id = 1 FOR UPDATE", logger: logger
    ).collect().first?.decode(String.self) ?? ""
  }

  func advanceInboundFeed(to cursor: String, applied: Int, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE campaign.inbound_feed SET cursor = \(cursor), messages_applied = messages_applied + \(applied), updated_at = now()
      WHERE id = 1
      """, logger: logger)
  }

  /// The ids of the subscribers with these phone numbers, e-mail addresses or WhatsApp numbers,
  /// by number or address (a WhatsApp number's key is "whatsapp:" and the number).
  func subscriberIDs(
    phones: [String], emails: [String], whatsapps: [String] = [], on connection: PostgresConnection
  ) async throws -> [String: UUID] {
    guard !phones.isEmpty || !emails.isEmpty || !whatsapps.isEmpty else { return [:] }
    var found: [String: UUID] = [:]
    let rows = try await connection.query(
      """
      SELECT id, phone, email, whatsapp FROM campaign.subscribers
      WHERE (phone = ANY(\(phones)::text[]) OR email = ANY(\(emails.map { $0.lowercased() })::text[])
          OR whatsapp = ANY(\(whatsapps)::text[]))
        AND status <> 'erased'
      """, logger: logger)
    for try await (id, phone, email, whatsapp) in rows.decode((UUID, String?, String?, String?).self) {
      if let phone, phones.contains(phone) { found[phone] = id }
      if let email { found[email] = id }
      if let whatsapp, whatsapps.contains(whatsapp) { found["whatsapp:" + whatsapp] = id }
    }
    return found
  }

  /// Withdraws or gives back a subscriber's consent on the change's channel, with its consent
  /// event; 1 when it changed, 0 when it already was so (or the subscriber was erased).
  func changeConsent(_ change: InboundFeedConsumer.ConsentChange, on connection: PostgresConnection) async throws -> Int {
    let prefix = ["email", "whatsapp"].contains(change.channel) ? change.channel : "sms"
    let rows = try await connection.query(
      PostgresQuery(
        unsafeSQL: """
          WITH changed AS (
            UPDATE campaign.subscribers SET
              \(prefix)_subscribed = $1,
              \(prefix)_consent_source = CASE WHEN $1 THEN $2 ELSE \(prefix)_consent_source END,
              \(prefix)_consented_at = CASE WHEN $1 THEN now() ELSE \(prefix)_consented_at END,
              \(prefix)_unsubscribed_at = CASE WHEN $1 THEN NULL ELSE now() END,
              updated_at = now()
            WHERE id = $3 AND \(prefix)_subscribed <> $1 AND status <> 'erased'
            RETURNING id
          )
          INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at, campaign_id)
          SELECT id, $4, $1, $2, now(), $5 FROM changed
          RETURNING 1
          """,
        binds: {
          var binds = PostgresBindings()
          binds.append(change.subscribed)
          binds.append(change.source)
          binds.append(change.subscriber)
          binds.append(prefix)
          binds.append(change.campaign)
          return binds
        }()), logger: logger)
    return try await rows.collect().count
  }
}
