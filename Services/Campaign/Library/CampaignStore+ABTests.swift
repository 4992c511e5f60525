import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A/B tests that decide (SPEC §13): the test's settings and decision, the claim of a test that
/// is due, its numbers, and the rest of the audience written to the outbox as wave 1 — all in the
/// transaction that holds the test's and the campaign's row locks, so a test is decided once
/// however many replicas look, and a crash before the commit leaves it undecided.
extension CampaignStore {
  /// The tests of these campaigns, by campaign.
  func abTests(of campaigns: [UUID]) async throws -> [UUID: ABTestRecord] {
    var tests: [UUID: ABTestRecord] = [:]
    let rows = try await client.query(
      """
      SELECT campaign_id, test_basis_points, wait_seconds, metric, confidence_basis_points, fallback, decide_at, decision::text
      FROM campaign.ab_tests WHERE campaign_id = ANY(\(campaigns)::uuid[])
      """, logger: logger)
    for try await (campaign, share, wait, metric, confidence, fallback, decideAt, decisionJSON) in rows.decode(
      (UUID, Int, Int, String, Int, String, Date?, String?).self)
    {
      let decision = try decisionJSON.map { try Self.decisionDecoder.decode(ABDecision.self, from: Data($0.utf8)) }
      tests[campaign] = ABTestRecord(
        settings: ABTestSettings(
          testBasisPoints: share, waitSeconds: wait, metric: metric, confidenceBasisPoints: confidence, fallback: fallback),
        decideAt: decideAt, decision: decision)
    }
    return tests
  }

  /// A campaign's test settings (nil without a test), read in the caller's transaction.
  func abTestSettings(of campaign: UUID, on connection: PostgresConnection) async throws -> ABTestSettings? {
    try await connection.query(
      """
      SELECT test_basis_points, wait_seconds, metric, confidence_basis_points, fallback FROM campaign.ab_tests
      WHERE campaign_id = \(campaign)
      """, logger: logger
    ).decode((Int, Int, String, Int, String).self).elements().first.map {
      ABTestSettings(testBasisPoints: $0.0, waitSeconds: $0.1, metric: $0.2, confidenceBasisPoints: $0.3, fallback: $0.4)
    }
  }

  /// Decides the undecided test due first at `now` whose campaign is sending (a paused one waits
  /// for its resume) and whose test share is all relayed (a relay behind waits: the test is
  /// judged on messages that went out), skipping those another replica holds and `excluded`;
  /// returns its campaign and decision, or nil when none is due. A failure is thrown as
  /// `ABTestFailure` naming the campaign, which stays undecided.
  package func decideDueABTest(at now: Date, excluding excluded: [UUID] = []) async throws -> (campaign: UUID, decision: ABDecision)? {
    try await transaction { connection in
      let row = try await connection.query(
        """
        SELECT \(unescaped: Self.campaignColumns) FROM campaign.ab_tests t JOIN campaign.campaigns c ON c.id = t.campaign_id
        WHERE t.decided_at IS NULL AND t.decide_at <= \(now) AND c.status = 'sending'
          AND NOT (t.campaign_id = ANY(\(excluded)::uuid[]))
          AND NOT EXISTS (SELECT 1 FROM campaign.outbox_chunks k WHERE k.campaign_id = t.campaign_id AND k.status = 'pending')
        ORDER BY t.decide_at LIMIT 1
        FOR UPDATE OF t, c SKIP LOCKED
        """, logger: logger
      ).collect().first
      guard let row else { return nil }
      let campaign = try Self.campaignRecord(row)
      do {
        guard let settings = try await abTestSettings(of: campaign.id, on: connection) else { return nil }
        return (campaign.id, try await conclude(campaign, settings: settings, picked: nil, at: now, on: connection))
      } catch {
        throw ABTestFailure(campaign: campaign.id, error: error)
      }
    }
  }

  /// An operator's pick before the test ends: the same as a decision, with `variant` winning.
  package func pickABTestWinner(_ campaignID: UUID, variant: String, at now: Date) async throws -> CampaignRecord {
    try await transaction { connection -> Void in
      let row = try await connection.query(
        "SELECT \(unescaped: Self.campaignColumns) FROM campaign.campaigns c WHERE c.id = \(campaignID) FOR UPDATE", logger: logger
      ).collect().first
      guard let row else { throw Self.notFound("campaign", campaignID, field: "campaign_id") }
      let campaign = try Self.campaignRecord(row)
      let state = try await connection.query(
        "SELECT decided_at FROM campaign.ab_tests WHERE campaign_id = \(campaignID) FOR UPDATE", logger: logger
      ).decode(Date?.self).elements()
      guard let decidedAt = state.first, let settings = try await abTestSettings(of: campaignID, on: connection) else {
        throw RPCError.field("campaign_id", .failedPrecondition, "campaign \(campaignID.lowercasedString) has no A/B test")
      }
      if let decidedAt {
        throw RPCError.field(
          "campaign_id", .failedPrecondition,
          "the A/B test of campaign \(campaignID.lowercasedString) was decided at \(ISOTime.format(decidedAt))")
      }
      guard ["sending", "paused"].contains(campaign.status) else {
        throw RPCError.field(
          "status", .failedPrecondition,
          "campaign \(campaignID.lowercasedString) is \(campaign.status); a winner can be picked while it is sending or paused")
      }
      let names = try await variantNames(of: campaignID, on: connection)
      guard names.contains(variant) else {
        throw RPCError.field(
          "variant", .notFound,
          "campaign \(campaignID.lowercasedString) has no variant '\(variant)' (it has \(names.joined(separator: ", ")))")
      }
      _ = try await conclude(campaign, settings: settings, picked: variant, at: now, on: connection)
    }
    return try await campaign(id: campaignID)
  }

  /// Ends a locked, undecided test: its numbers, the decision (the statistics', or the variant an
  /// operator `picked`), the rest of the audience written to the winner and the decision stored.
  func conclude(
    _ campaign: CampaignRecord, settings: ABTestSettings, picked: String?, at now: Date, on connection: PostgresConnection
  ) async throws -> ABDecision {
    let arms = try await abArms(of: campaign.id, metric: settings.metric, on: connection)
    var decision =
      if let picked {
        ABStatistics.picked(
          picked, metric: settings.metric, arms: arms, confidenceBasisPoints: settings.confidenceBasisPoints, at: now)
      } else {
        ABStatistics.decide(
          metric: settings.metric, arms: arms, confidenceBasisPoints: settings.confidenceBasisPoints, fallback: settings.fallback,
          at: now)
      }
    decision.restRecipients = try await writeRest(of: campaign, to: decision.winner, on: connection)
    try await record(decision, of: campaign.id, on: connection)
    return decision
  }

  /// Each variant's test numbers for `metric`, in the campaign's order: its test recipients and
  /// those who opened, clicked or converted once at least (unique counts), or its revenue and
  /// the sum of its recipients' squared revenue.
  func abArms(of campaign: UUID, metric: String, on connection: PostgresConnection) async throws -> [ABArm] {
    let variants = try await connection.query(
      "SELECT name, recipients FROM campaign.campaign_variants WHERE campaign_id = \(campaign) ORDER BY position", logger: logger
    ).decode((String, Int64).self).elements()
    var successes: [String: (Int64, Double)] = [:]
    let rows: PostgresRowSequence
    switch metric {
    case "open", "click":
      let status = metric == "open" ? "unique_opened" : "unique_clicked"
      rows = try await connection.query(
        """
        SELECT variant, sum(events)::int8, 0::float8 FROM campaign.campaign_daily_stats
        WHERE campaign_id = \(campaign) AND status = \(status) GROUP BY variant
        """, logger: logger)
    case "conversion":
      rows = try await connection.query(
        """
        SELECT variant, count(DISTINCT subscriber_id), 0::float8 FROM campaign.conversions
        WHERE campaign_id = \(campaign) AND variant IS NOT NULL GROUP BY variant
        """, logger: logger)
    default:
      rows = try await connection.query(
        """
        SELECT variant, sum(value)::int8, sum(value::float8 * value::float8) FROM (
          SELECT variant, subscriber_id, sum(value_cents) AS value FROM campaign.conversions
          WHERE campaign_id = \(campaign) AND variant IS NOT NULL GROUP BY variant, subscriber_id) per_recipient
        GROUP BY variant
        """, logger: logger)
    }
    for try await (variant, count, squares) in rows.decode((String, Int64, Double).self) {
      successes[variant] = (count, squares)
    }
    return variants.map { name, recipients in
      let (count, squares) = successes[name] ?? (0, 0)
      return ABArm(variant: name, recipients: recipients, successes: count, sumOfSquares: squares)
    }
  }

  /// Writes the rest of the audience (eligible now: consent is checked again; everyone not in the
  /// outbox already, so nobody gets two variants) to the outbox as wave 1, to `winner` or split
  /// evenly over the variants when nil, cut into chunks numbered after the test's; returns how
  /// many it wrote.
  func writeRest(of campaign: CampaignRecord, to winner: String?, on connection: PostgresConnection) async throws -> Int64 {
    var builder = SQLBuilder()
    let audience = try await audiencePredicate(of: campaign, builder: &builder, on: connection)
    let variants = try await variantNames(of: campaign.id, on: connection)
    let firstChunk =
      try await connection.query(
        "SELECT coalesce(max(chunk) + 1, 0) FROM campaign.outbox_chunks WHERE campaign_id = \(campaign.id)", logger: logger
      ).decode(Int32.self).elements().first ?? 0
    let assignment: String
    if let winner {
      assignment = builder.bind(winner)
    } else {
      // Evenly: bucket modulo the number of variants.
      var cases = ""
      for (index, name) in variants.dropLast().enumerated() {
        cases += " WHEN a.bucket = \(builder.bind(Int64(index))) THEN \(builder.bind(name))"
      }
      assignment = cases.isEmpty ? builder.bind(variants.last ?? "") : "CASE\(cases) ELSE \(builder.bind(variants.last ?? "")) END"
    }
    let consent = Self.consentSQL(campaign.channel)
    let campaignBind = builder.bind(campaign.id)
    // The audience as it is now: its counts replace those of the start (which saw the test's).
    let sql = """
      WITH audience AS (
        SELECT s.id, (s.status = 'active' AND \(consent)) AS eligible,
          mod(hashtextextended(s.id::text, \(builder.bind(Self.seed(of: campaign.id)))) & 9223372036854775807,
            \(builder.bind(Int64(max(variants.count, 1))))) AS bucket
        FROM campaign.subscribers s WHERE s.status <> 'erased' AND (\(audience))
      ), \(Self.outboxWrite(
        campaign: campaignBind, entries: "SELECT a.id, \(assignment) FROM audience a WHERE a.eligible", wave: "1",
        firstChunk: builder.bind(firstChunk), skipExisting: true))
      SELECT 'audience', count(*) FROM audience
      UNION ALL SELECT 'eligible', count(*) FROM audience WHERE eligible
      UNION ALL SELECT 'variant:' || variant, count(*) FROM written GROUP BY variant
      """
    var counts: [String: Int64] = [:]
    for try await (key, count) in try await connection.query(builder.query(sql), logger: logger).decode((String, Int64).self) {
      counts[key] = count
    }
    var written: Int64 = 0
    for variant in variants {
      let count = counts["variant:" + variant] ?? 0
      guard count > 0 else { continue }
      written += count
      try await connection.query(
        """
        UPDATE campaign.campaign_variants SET recipients = recipients + \(count)
        WHERE campaign_id = \(campaign.id) AND name = \(variant)
        """, logger: logger)
    }
    let audienceCount = counts["audience"] ?? 0
    try await connection.query(
      """
      UPDATE campaign.campaigns SET audience_count = \(audienceCount), skipped_no_consent = \(audienceCount - (counts["eligible"] ?? 0))
      WHERE id = \(campaign.id)
      """, logger: logger)
    return written
  }

  /// The campaign's variant names, in its order.
  func variantNames(of campaign: UUID, on connection: PostgresConnection) async throws -> [String] {
    try await connection.query(
      "SELECT name FROM campaign.campaign_variants WHERE campaign_id = \(campaign) ORDER BY position", logger: logger
    ).decode(String.self).elements()
  }

  /// Stores a decision on its (locked) test.
  func record(_ decision: ABDecision, of campaign: UUID, on connection: PostgresConnection) async throws {
    let json = String(decoding: try Self.decisionEncoder.encode(decision), as: UTF8.self)
    try await connection.query(
      """
      UPDATE campaign.ab_tests SET decided_at = \(decision.decidedAt), outcome = \(decision.outcome), winner = \(decision.winner),
        decision = \(json)::jsonb, rest_recipients = \(decision.restRecipients)
      WHERE campaign_id = \(campaign)
      """, logger: logger)
    try await connection.query("UPDATE campaign.campaigns SET updated_at = now() WHERE id = \(campaign)", logger: logger)
  }

  static var decisionEncoder: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = .sortedKeys
    return encoder
  }

  static var decisionDecoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return decoder
  }
}

/// A due A/B test that could not be decided (it stays undecided; the decider moves on to others).
package struct ABTestFailure: Error {
  package var campaign: UUID
  package var error: any Error
}
