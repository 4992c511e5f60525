import Foundation
import HeraldCore
import Logging
import Metrics
import PostgresNIO

/// The complaint and bounce guard (SPEC §10): a sending campaign (or one sent in the last three
/// days, the default time delivery keeps trying a message, whose mail may still be going out)
/// whose complaint rate or
/// hard-bounce rate (soft bounces are not counted) passes its threshold, once it has sent enough
/// for the rate to mean something, pauses itself with the reason. Checked as the campaign's
/// delivery events are taken in, in the same transaction. Verification reports a campaign so
/// paused (`data.campaign_paused_by_guard`), and its alert goes out on verification's alert path.
/// (Delivery guards each sending domain the same way: `DomainGuard`.)
package struct DeliverabilityGuard: Sendable, Equatable {
  package var thresholds = DeliverabilityThresholds()

  package init() {}

  /// How long after a campaign was sent its mail may still be going out, and so is judged:
  /// delivery's default time to live (HERALD_DELIVERY_MESSAGE_TTL, 72 h).
  static let stillSending = "3 days"

  /// The start of every reason the guard writes; verification finds paused campaigns by it.
  package static let reasonPrefix = DeliverabilityGuardReason.prefix

  package static func load(_ settings: Settings) throws -> DeliverabilityGuard {
    var result = DeliverabilityGuard()
    result.thresholds = try DeliverabilityThresholds.load(settings, prefix: "HERALD_CAMPAIGN_GUARD")
    return result
  }

  /// Pauses those of `campaigns` (sending) whose rates, over everything they sent, pass a
  /// threshold; returns each paused campaign with its reason.
  func enforce(on campaigns: [UUID], connection: PostgresConnection, logger: Logger) async throws -> [(UUID, String)] {
    guard !campaigns.isEmpty else { return [] }
    let totals = try await connection.query(
      """
      SELECT campaign_id,
        coalesce(sum(events) FILTER (WHERE status = 'sent'), 0)::int8,
        coalesce(sum(events) FILTER (WHERE status = 'complained'), 0)::int8,
        coalesce(sum(events) FILTER (WHERE status = 'bounced'), 0)::int8
      FROM campaign.campaign_daily_stats
      WHERE campaign_id = ANY(\(campaigns)::uuid[]) AND status IN ('sent', 'complained', 'bounced')
        -- A push bounce is a device that no longer has the app, not a mailbox's verdict.
        AND campaign_id NOT IN (SELECT id FROM campaign.campaigns WHERE id = ANY(\(campaigns)::uuid[]) AND channel = 'push')
      GROUP BY campaign_id
      """, logger: logger)
    var breached: [(UUID, String)] = []
    for try await (id, sent, complained, bounced) in totals.decode((UUID, Int64, Int64, Int64).self) {
      if let reason = thresholds.breach(sent: sent, complained: complained, hardBounced: bounced) {
        breached.append((id, Self.reasonPrefix + reason))
      }
    }
    guard !breached.isEmpty else { return [] }
    let rows = try await connection.query(
      """
      UPDATE campaign.campaigns c SET status = 'paused', status_reason = j.reason, updated_at = now(), delivery_pending = true
      FROM unnest(\(breached.map(\.0))::uuid[], \(breached.map(\.1))::text[]) AS j(id, reason)
      WHERE c.id = j.id AND (c.status = 'sending' OR (c.status = 'sent' AND c.finished_at > now() - \(Self.stillSending)::interval))
      RETURNING c.id, c.status_reason
      """, logger: logger)
    var paused: [(UUID, String)] = []
    for try await (id, reason) in rows.decode((UUID, String).self) { paused.append((id, reason)) }
    return paused
  }
}
