import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// A device's push token as stored in `campaign.push_tokens`.
package struct PushTokenRecord: Sendable, Equatable {
  package var id: UUID
  package var subscriberID: UUID
  package var platform: String
  package var token: String
  package var appID: String
  package var createdAt: Date
  package var lastSeenAt: Date
  package var retiredAt: Date?
  package var retiredReason: String?
}

/// Subscribers' push tokens (issue 23): registered by their apps, sent to while live, retired when
/// the push service says the app no longer has them, through the API, or by an unsubscribe from
/// push or an erasure.
extension CampaignStore {
  static let pushTokenColumns = """
    id, subscriber_id, platform, token, app_id, created_at, last_seen_at, retired_at, retired_reason
    """

  static func pushTokenRecord(_ row: PostgresRow) throws -> PushTokenRecord {
    let (id, subscriber, platform, token, app, created, seen, retired, reason) = try row.decode(
      (UUID, UUID, String, String, String, Date, Date, Date?, String?).self)
    return PushTokenRecord(
      id: id, subscriberID: subscriber, platform: platform, token: token, appID: app, createdAt: created, lastSeenAt: seen,
      retiredAt: retired, retiredReason: reason)
  }

  /// The subscriber's tokens, live and retired, most recently seen first.
  package func pushTokens(of subscriber: UUID) async throws -> [PushTokenRecord] {
    try await client.query(
      """
      SELECT \(unescaped: Self.pushTokenColumns) FROM campaign.push_tokens
      WHERE subscriber_id = \(subscriber) ORDER BY last_seen_at DESC, id DESC
      """, logger: logger
    ).collect().map(Self.pushTokenRecord)
  }

  package enum PushTokenOutcome: Sendable {
    case registered(PushTokenRecord)
    case noSubscriber
    case notActive(String)
  }

  /// Registers `token` for an active subscriber, or notes it was seen again: a token another
  /// subscriber had moves here (the device changed hands) and a retired one lives again. After
  /// an unsubscribe from push the token is kept retired (reason unsubscribed), unless
  /// `resubscribeSource` lifts the unsubscribe (with its consent event).
  package func registerPushToken(
    subscriber: UUID, platform: String, token: String, appID: String, resubscribeSource: String?
  ) async throws -> PushTokenOutcome {
    try await transaction { connection in
      let rows = try await connection.query(
        "SELECT status, push_unsubscribed_at FROM campaign.subscribers WHERE id = \(subscriber) FOR NO KEY UPDATE", logger: logger
      ).decode((String, Date?).self).elements()
      guard let (status, unsubscribedAt) = rows.first else { return .noSubscriber }
      guard status == "active" else { return .notActive(status) }
      var off = unsubscribedAt != nil
      if off, let source = resubscribeSource {
        try await connection.query(
          "UPDATE campaign.subscribers SET push_unsubscribed_at = NULL, updated_at = now() WHERE id = \(subscriber)", logger: logger)
        try await insertConsentEvent(
          ConsentEvent(channel: "push", subscribed: true, source: source, occurredAt: Date()), for: subscriber, on: connection)
        off = false
      }
      let written = try await connection.query(
        """
        INSERT INTO campaign.push_tokens (subscriber_id, platform, token, app_id, retired_at, retired_reason)
        VALUES (\(subscriber), \(platform), \(token), \(appID), CASE WHEN \(off) THEN now() END, CASE WHEN \(off) THEN 'unsubscribed' END)
        ON CONFLICT (platform, token) DO UPDATE SET
          subscriber_id = EXCLUDED.subscriber_id, app_id = EXCLUDED.app_id, last_seen_at = now(),
          retired_at = EXCLUDED.retired_at, retired_reason = EXCLUDED.retired_reason
        RETURNING \(unescaped: Self.pushTokenColumns)
        """, logger: logger
      ).collect()
      guard let row = written.first else { throw PostgresError.protocol("INSERT ... RETURNING gave no row") }
      return .registered(try Self.pushTokenRecord(row))
    }
  }

  /// Registers tokens given with subscribers (a create, an import), in the caller's transaction:
  /// as RegisterPushToken does (a token moves to its new subscriber; a subscriber unsubscribed
  /// from push gets it retired). Of one token given twice, the last counts.
  func registerPushTokens(_ tokens: [(subscriber: UUID, token: NewPushToken)], on connection: PostgresConnection) async throws {
    var last: [String: Int] = [:]
    for (index, item) in tokens.enumerated() { last[item.token.platform + ":" + item.token.token] = index }
    let kept = tokens.indices.filter { last[tokens[$0].token.platform + ":" + tokens[$0].token.token] == $0 }.map { tokens[$0] }
    guard !kept.isEmpty else { return }
    try await connection.query(
      """
      INSERT INTO campaign.push_tokens (subscriber_id, platform, token, app_id, retired_at, retired_reason)
      SELECT t.subscriber_id, t.platform, t.token, t.app_id,
        CASE WHEN s.push_unsubscribed_at IS NOT NULL THEN now() END,
        CASE WHEN s.push_unsubscribed_at IS NOT NULL THEN 'unsubscribed' END
      FROM unnest(
        \(kept.map(\.subscriber))::uuid[], \(kept.map(\.token.platform))::text[], \(kept.map(\.token.token))::text[],
        \(kept.map(\.token.appID))::text[]
      ) AS t(subscriber_id, platform, token, app_id)
      JOIN campaign.subscribers s ON s.id = t.subscriber_id
      ON CONFLICT (platform, token) DO UPDATE SET
        subscriber_id = EXCLUDED.subscriber_id, app_id = EXCLUDED.app_id, last_seen_at = now(),
        retired_at = EXCLUDED.retired_at, retired_reason = EXCLUDED.retired_reason
      """, logger: logger)
  }

  /// Retires one of the subscriber's tokens (a retired one stays as it was); nil when the
  /// subscriber has no token with that id.
  package func retirePushToken(subscriber: UUID, token id: UUID, reason: String) async throws -> PushTokenRecord? {
    try await client.query(
      """
      WITH retired AS (
        UPDATE campaign.push_tokens SET retired_at = now(), retired_reason = \(reason)
        WHERE id = \(id) AND subscriber_id = \(subscriber) AND retired_at IS NULL
        RETURNING \(unescaped: Self.pushTokenColumns)
      )
      SELECT \(unescaped: Self.pushTokenColumns) FROM retired
      UNION ALL
      SELECT \(unescaped: Self.pushTokenColumns) FROM campaign.push_tokens
      WHERE id = \(id) AND subscriber_id = \(subscriber) AND NOT EXISTS (SELECT 1 FROM retired)
      """, logger: logger
    ).collect().first.map(Self.pushTokenRecord)
  }

  /// Retires every live token of the subscriber, in the caller's transaction (an erasure deletes
  /// them all instead: a device token is personal data). For an unsubscribe, whether it is new:
  /// the subscriber was not unsubscribed from push before (the caller then records the time).
  /// `onlyIfTokens`: an unsubscribe from every channel turns push off only for a subscriber who
  /// has had a token (an e-mail-only person's history gets no push entry).
  func retirePushTokens(
    of subscriber: UUID, reason: String, onlyIfTokens: Bool = false, on connection: PostgresConnection
  ) async throws -> Bool {
    if reason == "erased" {
      return try await !connection.query(
        "DELETE FROM campaign.push_tokens WHERE subscriber_id = \(subscriber) RETURNING 1", logger: logger
      ).collect().isEmpty
    }
    let retired = try await connection.query(
      """
      UPDATE campaign.push_tokens SET retired_at = now(), retired_reason = \(reason)
      WHERE subscriber_id = \(subscriber) AND retired_at IS NULL RETURNING 1
      """, logger: logger
    ).collect().count
    let (already, tokens) =
      try await connection.query(
        """
        SELECT push_unsubscribed_at IS NOT NULL, EXISTS (SELECT 1 FROM campaign.push_tokens WHERE subscriber_id = \(subscriber))
        FROM campaign.subscribers WHERE id = \(subscriber)
        """, logger: logger
      ).decode((Bool, Bool).self).elements().first ?? (false, false)
    if onlyIfTokens && !tokens { return false }
    return retired > 0 || !already
  }

  /// Retires the tokens the push services refused (the app no longer has them), by platform and
  /// token, in the caller's transaction; how many were live.
  func retireRefusedPushTokens(_ tokens: [(platform: String, token: String)], on connection: PostgresConnection) async throws -> Int {
    guard !tokens.isEmpty else { return 0 }
    return try await connection.query(
      """
      UPDATE campaign.push_tokens t SET retired_at = now(), retired_reason = 'unregistered'
      FROM unnest(\(tokens.map(\.platform))::text[], \(tokens.map(\.token))::text[]) AS r(platform, token)
      WHERE t.platform = r.platform AND t.token = r.token AND t.retired_at IS NULL
      RETURNING 1
      """, logger: logger
    ).collect().count
  }
}
