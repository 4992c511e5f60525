import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// Spend caps (a campaign's budget, and the reservations its sends hold against it) and warm-up
/// schedules (a sending identity's daily allowance). The reservations are taken by the workers
/// before a send; the settlement turns them into spend or gives them back (`+Queue`).
extension DeliveryStore {
  /// Creates or updates campaigns' budgets (what was spent or is reserved is kept; a budget below
  /// it stops further sends).
  package func setSpendCaps(_ caps: [(UUID, Int64)]) async throws {
    guard !caps.isEmpty else { return }
    try await client.query(
      """
      INSERT INTO delivery.spend_caps AS s (campaign_id, budget_cents)
      SELECT * FROM unnest(\(caps.map(\.0))::uuid[], \(caps.map(\.1))::int8[])
      ON CONFLICT (campaign_id) DO UPDATE
        SET budget_cents = greatest(EXCLUDED.budget_cents, s.spent_cents + s.reserved_cents), updated_at = now()
      WHERE s.budget_cents <> greatest(EXCLUDED.budget_cents, s.spent_cents + s.reserved_cents)
      """, logger: logger)
  }

  /// A campaign's spend cap; nil when it has none.
  package func spendCap(_ campaign: UUID) async throws -> SpendCapRecord? {
    try await client.query(
      "SELECT budget_cents, spent_cents FROM delivery.spend_caps WHERE campaign_id = \(campaign)", logger: logger
    ).decode((Int64, Int64).self).elements().first.map { SpendCapRecord(budgetCents: $0.0, spentCents: $0.1) }
  }

  /// Reserves `costCents` for each of `messages` (leased by this worker, in order) against their
  /// campaign's spend cap, atomically: the cap's row is locked for the decision, and the database's
  /// constraint refuses anything past the budget. Returns how many fit (a campaign without a cap
  /// fits all) and whether other sends of the campaign still hold reservations (whose outcome may
  /// give budget back).
  package func reserveSpend(campaign: UUID, costCents: Int64, messages: [UUID]) async throws -> (granted: Int, othersInFlight: Bool) {
    guard costCents > 0, !messages.isEmpty else { return (messages.count, false) }
    return try await transaction { connection in
      let rows = try await connection.query(
        "SELECT budget_cents, spent_cents, reserved_cents FROM delivery.spend_caps WHERE campaign_id = \(campaign) FOR UPDATE",
        logger: logger
      ).decode((Int64, Int64, Int64).self).elements()
      guard let (budget, spent, reserved) = rows.first else { return (messages.count, false) }
      let granted = Int(min(Int64(messages.count), max(0, budget - spent - reserved) / costCents))
      if granted > 0 {
        try await connection.query(
          """
          UPDATE delivery.spend_caps SET reserved_cents = reserved_cents + \(Int64(granted) * costCents), updated_at = now()
          WHERE campaign_id = \(campaign)
          """, logger: logger)
        try await connection.query(
          """
          UPDATE delivery.messages SET reserved_cents = reserved_cents + \(costCents)
          WHERE id = ANY(\(Array(messages.prefix(granted)))::uuid[])
          """, logger: logger)
      }
      return (granted, reserved > 0)
    }
  }

  /// Reserves up to `count` of today's warm-up allowance of a sending identity. An identity
  /// without a schedule is not capped; its first reservation starts its day 1.
  package func reserveWarmup(identity: String, count: Int) async throws -> Int {
    guard count > 0 else { return 0 }
    return try await transaction { connection in
      let schedules = try await connection.query(
        """
        UPDATE delivery.warmup_schedules SET started_on = coalesce(started_on, current_date)
        WHERE sending_identity = \(identity)
        RETURNING daily_caps[least(cardinality(daily_caps), (current_date - started_on) + 1)]
        """, logger: logger
      ).decode(Int64.self).elements()
      guard let cap = schedules.first else { return count }
      let sent =
        try await connection.query(
          """
          INSERT INTO delivery.identity_daily_sends AS d (sending_identity, day, sent) VALUES (\(identity), current_date, 0)
          ON CONFLICT (sending_identity, day) DO UPDATE SET sent = d.sent
          RETURNING sent
          """, logger: logger
        ).decode(Int64.self).elements().first ?? 0
      let granted = Int(min(Int64(count), max(0, cap - sent)))
      if granted > 0 {
        try await connection.query(
          """
          UPDATE delivery.identity_daily_sends SET sent = sent + \(granted)
          WHERE sending_identity = \(identity) AND day = current_date
          """, logger: logger)
      }
      return granted
    }
  }

  /// Gives back warm-up allowance reserved for sends that did not happen.
  package func releaseWarmup(identity: String, count: Int) async throws {
    guard count > 0 else { return }
    try await client.query(
      """
      UPDATE delivery.identity_daily_sends SET sent = greatest(0, sent - \(count))
      WHERE sending_identity = \(identity) AND day = current_date
      """, logger: logger)
  }

  /// Creates or replaces a sending identity's warm-up schedule (its first day of sending is kept).
  package func putSchedule(_ schedule: WarmupScheduleConfig) async throws {
    try await client.query(
      """
      INSERT INTO delivery.warmup_schedules (sending_identity, daily_caps) VALUES (\(schedule.sendingIdentity), \(schedule.dailyCaps)::int8[])
      ON CONFLICT (sending_identity) DO UPDATE SET daily_caps = EXCLUDED.daily_caps, updated_at = now()
      """, logger: logger)
  }

  /// Every warm-up schedule (only `identity`'s, if given) with its identity's first day of
  /// sending, today's day number and today's sends.
  package func warmupSchedules(identity: String? = nil) async throws -> [WarmupScheduleRecord] {
    try await client.query(
      """
      SELECT w.sending_identity, w.daily_caps, w.started_on::timestamptz,
        coalesce(current_date - w.started_on + 1, 0), coalesce(d.sent, 0)
      FROM delivery.warmup_schedules w
      LEFT JOIN delivery.identity_daily_sends d ON d.sending_identity = w.sending_identity AND d.day = current_date
      WHERE \(identity)::text IS NULL OR w.sending_identity = \(identity)
      ORDER BY w.sending_identity
      """, logger: logger
    ).decode((String, [Int64], Date?, Int, Int64).self).elements().map { identity, caps, started, today, sent in
      WarmupScheduleRecord(sendingIdentity: identity, dailyCaps: caps, startedOn: started, today: today, sentToday: sent)
    }
  }
}
