import Foundation
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import PostgresNIO

/// Opens and clicks through Herald's own tracking links (SPEC §10): each becomes a delivery event
/// (`opened`, `clicked`) of the message its token names, with the verdict person or machine and
/// the signals behind it, and so flows into campaign analytics through the event feed.
extension DeliveryStore {
  /// What the event keeps besides its status: the signals, the link and the client.
  struct TrackingDetail: Encodable {
    var signals: [String]
    var link: Int?
    var links: Int?
    var url: String?
    var userAgent: String

    enum CodingKeys: String, CodingKey {
      case signals, link, links, url
      case userAgent = "user_agent"
    }
  }

  /// Opens and clicks of one message recorded per minute at most: the links are public, and a
  /// genuine one replayed in a loop must not fill the events table.
  package static let maxTrackingHitsPerMinute = 30

  /// Records one hit of `token` as an event of its message and answers the message, the verdict
  /// and whether it was recorded (not past `maxTrackingHitsPerMinute`, and its message's lock had
  /// within two seconds); nil when no sent message has the token's key (never sent, or not any
  /// more in the queue). Hits on one message are judged one after another: the message's row is
  /// locked first, and what came before is read after, by a statement of its own (in READ
  /// COMMITTED each statement sees what committed before it began), so links a scanner follows
  /// all at once see each other.
  package func recordTrackingHit(
    _ token: TrackingToken, userAgent: String, remoteAddress: String, method: String
  ) async throws -> (message: UUID, engagement: EngagementSignals, recorded: Bool)? {
    do {
      return try await transaction { connection in
        // A replayed link waits at most this long for its message (a pooled connection waits too).
        try await connection.query("SET LOCAL lock_timeout = '2s'", logger: logger)
        guard
          let message = try await connection.query(
            """
            SELECT id FROM delivery.messages
            WHERE idempotency_key = \(token.idempotencyKey) AND status IN ('sent', 'delivered', 'unknown', 'bounced')
            FOR NO KEY UPDATE
            """, logger: logger
          ).decode(UUID.self).elements().first
        else { return nil }
        let rows = try await connection.query(
          """
          SELECT
            extract(epoch FROM clock_timestamp() - (
              SELECT max(e.occurred_at) FROM delivery.delivery_events e WHERE e.message_id = \(message) AND e.status = 'sent'))::float8,
            coalesce((
              SELECT array_agg(DISTINCT (e.signals ->> 'link')::int) FROM delivery.delivery_events e
              WHERE e.message_id = \(message) AND e.status = 'clicked' AND e.signals ? 'link'
                AND e.occurred_at > clock_timestamp() - make_interval(secs => \(EngagementSignals.burstWindow))), '{}'),
            (SELECT count(*) FROM delivery.delivery_events e
              WHERE e.message_id = \(message) AND e.status IN ('opened', 'clicked')
                AND e.occurred_at > clock_timestamp() - interval '1 minute')
          """, logger: logger
        ).decode((Double?, [Int], Int).self).elements()
        guard let (secondsAfterSend, recentLinks, lastMinute) = rows.first else { return nil }
        let engagement = EngagementSignals(
          .init(
            kind: token.kind, userAgent: userAgent, remoteAddress: remoteAddress, method: method,
            secondsAfterSend: secondsAfterSend, link: token.link, links: token.links, recentlyClickedLinks: Set(recentLinks)))
        guard lastMinute < Self.maxTrackingHitsPerMinute else { return (message, engagement, false) }
        let agent = String(userAgent.prefix(512))
        let detail =
          token.kind == .open
          ? TrackingDetail(signals: engagement.signals, userAgent: agent)
          : TrackingDetail(signals: engagement.signals, link: token.link, links: token.links, url: token.url, userAgent: agent)
        let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        let text =
          (token.kind == .open ? "tracking pixel" : "tracking link \(token.link + 1) of \(token.links)")
          + (engagement.machine ? ", judged a machine's (\(engagement.signals.joined(separator: ", ")))" : "")
        try await connection.query(
          """
          INSERT INTO delivery.delivery_events (message_id, status, detail, machine, signals)
          VALUES (\(message), \(token.kind == .open ? "opened" : "clicked"), \(text), \(engagement.machine), \(json)::jsonb)
          """, logger: logger)
        return (message, engagement, true)
      }
    } catch  where error.sqlState == "55P03" {
      // The message stayed locked (a link replayed in a loop): answered, not recorded.
      return nil
    }
  }
}
