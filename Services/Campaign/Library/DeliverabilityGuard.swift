import Foundation
import HeraldCore
import Logging
import Metrics
import PostgresNIO

/// The complaint and bounce guard (SPEC §10): a sending campaign whose complaint rate or
/// hard-bounce rate (soft bounces are not counted) passes its threshold, once it has sent enough for the rate to mean something, pauses
/// itself with the reason. Checked as the campaign's delivery events are taken in, in the same
/// transaction. Verification reports a campaign so paused (`data.campaign_paused_by_guard`), and
/// its alert goes out on verification's alert path.
package struct DeliverabilityGuard: Sendable, Equatable {
  /// Complaints per message sent above which a campaign pauses (0.3 %: the bulk-sender limit of
  /// Gmail and Yahoo).
  package var complaintRate = 0.003
  /// Hard bounces per message sent above which a campaign pauses (5 %).
  package var bounceRate = 0.05
  /// Messages a campaign must have sent before the rates are judged.
  package var minimumSent: Int64 = 500

  package init() {}

  /// The start of every reason the guard writes; verification finds paused campaigns by it.
  package static let reasonPrefix = DeliverabilityGuardReason.prefix

  package static func load(_ settings: Settings) throws -> DeliverabilityGuard {
    var result = DeliverabilityGuard()
    func rate(_ name: String, _ value: Double) throws -> Double {
      guard let text = settings.optionalString(name) else { return value }
      guard let parsed = Double(text), parsed > 0, parsed < 1 else {
        throw ConfigurationError.malformed(variable: name, value: "'\(text)'", expected: "a fraction between 0 and 1, e.g. 0.003 for 0.3 %")
      }
      return parsed
    }
    result.complaintRate = try rate("HERALD_CAMPAIGN_GUARD_COMPLAINT_RATE", result.complaintRate)
    result.bounceRate = try rate("HERALD_CAMPAIGN_GUARD_BOUNCE_RATE", result.bounceRate)
    result.minimumSent = Int64(
      try settings.int("HERALD_CAMPAIGN_GUARD_MIN_SENT", default: Int(result.minimumSent), range: 1...100_000_000))
    return result
  }

  /// Pauses those of `campaigns` (sending) whose rates, over everything they sent, pass a
  /// threshold; returns each paused campaign with its reason.
  func enforce(on campaigns: [UUID], connection: PostgresConnection, logger: Logger) async throws -> [(UUID, String)] {
    guard !campaigns.isEmpty else { return [] }
    let rows = try await connection.query(
      """
      WITH totals AS (
        SELECT campaign_id,
          coalesce(sum(events) FILTER (WHERE status = 'sent'), 0) AS sent,
          coalesce(sum(events) FILTER (WHERE status = 'complained'), 0) AS complained,
          coalesce(sum(events) FILTER (WHERE status = 'bounced'), 0) AS bounced
        FROM campaign.campaign_daily_stats
        WHERE campaign_id = ANY(\(campaigns)::uuid[])
        GROUP BY campaign_id
      ), judged AS (
        SELECT campaign_id,
          CASE
            WHEN complained::numeric / sent > \(complaintRate)::numeric THEN
              'complaint rate ' || round(100 * complained::numeric / sent, 2) || ' % (' || complained || ' of ' || sent
                || ' sent) is above ' || round(100 * \(complaintRate)::numeric, 2) || ' %'
            WHEN bounced::numeric / sent > \(bounceRate)::numeric THEN
              'hard-bounce rate ' || round(100 * bounced::numeric / sent, 2) || ' % (' || bounced || ' of ' || sent
                || ' sent) is above ' || round(100 * \(bounceRate)::numeric, 2) || ' %'
          END AS reason
        FROM totals WHERE sent >= \(minimumSent)
      )
      UPDATE campaign.campaigns c SET status = 'paused', status_reason = \(Self.reasonPrefix) || j.reason, updated_at = now(),
        delivery_pending = true
      FROM judged j
      WHERE c.id = j.campaign_id AND j.reason IS NOT NULL AND c.status = 'sending'
      RETURNING c.id, c.status_reason
      """, logger: logger)
    var paused: [(UUID, String)] = []
    for try await (id, reason) in rows.decode((UUID, String).self) { paused.append((id, reason)) }
    return paused
  }
}
