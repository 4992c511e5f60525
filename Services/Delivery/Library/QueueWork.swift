import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// A message a worker holds the lease of.
package struct ClaimedMessage: Sendable, Equatable {
  package var message: OutgoingMessage
  package var attempts: Int
  /// `sending`, or `suppressed`/`expired` when the claim settled it at once.
  package var status: String
}

/// How a worker leaves a claimed message.
package struct Settlement: Sendable, Equatable {
  package enum Outcome: Sendable, Equatable {
    case sent(provider: String, providerMessageID: String?, costCents: Int64)
    /// Back to the queue after `delay`; `countsAsAttempt` false for deferrals (rate limit,
    /// warm-up cap, every breaker open) that never reached a provider.
    case retry(delay: Duration, countsAsAttempt: Bool, eventStatus: String)
    case dead
    case failed
    case bounced
    case unknown(provider: String)
  }

  package var id: UUID
  package var outcome: Outcome
  package var detail: String
  /// The send may have been charged although it is retried (an ambiguous send sent again): its
  /// reservation becomes spend instead of being given back.
  package var charged = false

  package init(id: UUID, outcome: Outcome, detail: String, charged: Bool = false) {
    self.id = id
    self.outcome = outcome
    self.detail = detail
    self.charged = charged
  }
}

extension PostgresMessageQueue {
  /// Claims up to `limit` due messages of `channels` with `FOR UPDATE SKIP LOCKED` (replicas never
  /// share one), leases them for `lease` under `token`, and records the transition. Messages to a
  /// suppressed address, or queued longer than `timeToLive`, are settled by the claim itself.
  /// Messages of a channel without an enabled provider stay queued until one is configured.
  package func claim(
    limit: Int, lease: Duration, token: UUID, timeToLive: Duration,
    channels: [String] = ["email", "sms", "push", "whatsapp"]
  ) async throws -> [ClaimedMessage] {
    guard !channels.isEmpty else { return [] }
    let rows = try await client.query(
      """
      WITH due AS (
        SELECT id FROM delivery.messages
        WHERE status = 'queued' AND not_before <= now() AND channel = ANY(\(channels)::text[])
        ORDER BY not_before
        LIMIT \(limit)
        FOR UPDATE SKIP LOCKED
      ), decided AS (
        SELECT m.id,
          CASE
            WHEN m.created_at < now() - \(Self.milliseconds(timeToLive)) * interval '1 millisecond' THEN 'expired'
            WHEN EXISTS (SELECT 1 FROM delivery.suppressions s WHERE s.address = lower(m.recipient)) THEN 'suppressed'
            ELSE 'sending'
          END AS status
        FROM delivery.messages m JOIN due ON due.id = m.id
      ), claimed AS (
        UPDATE delivery.messages m SET
          status = d.status,
          attempts = m.attempts + CASE WHEN d.status = 'sending' THEN 1 ELSE 0 END,
          lease_expires_at = CASE WHEN d.status = 'sending' THEN now() + \(Self.milliseconds(lease)) * interval '1 millisecond' END,
          lease_token = CASE WHEN d.status = 'sending' THEN \(token) END,
          last_error = CASE d.status
            WHEN 'expired' THEN 'not sent within its time to live'
            WHEN 'suppressed' THEN 'the address is on the suppression list' ELSE m.last_error END,
          updated_at = now()
        FROM decided d WHERE m.id = d.id
        RETURNING m.id, m.idempotency_key, m.channel, m.recipient, m.subject, m.body, m.campaign_id, m.subscriber_id,
          m.attempts, m.status, m.last_error
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail)
        SELECT id, status, CASE WHEN status = 'sending' THEN 'attempt ' || attempts ELSE last_error END FROM claimed
      )
      SELECT id, idempotency_key, channel, recipient, subject, body, campaign_id, attempts, status FROM claimed
      """, logger: logger)
    var claimed: [ClaimedMessage] = []
    for try await (id, key, channel, recipient, subject, body, campaign, attempts, status) in rows.decode(
      (UUID, String, String, String, String, String, UUID?, Int, String).self)
    {
      claimed.append(
        ClaimedMessage(
          message: OutgoingMessage(
            id: id, idempotencyKey: key, channel: channel, recipient: recipient, subject: subject, body: body,
            campaignID: campaign),
          attempts: attempts, status: status))
    }
    return claimed
  }

  /// Writes the outcomes of a leased batch and their events in one statement, and turns each
  /// message's spend reservation into spend (sent; or unknown, which may have been charged) or
  /// gives it back. Only messages still leased under `token` are touched (a lease that expired and
  /// was taken over is not overwritten); returns the ids written.
  @discardableResult
  package func settle(_ settlements: [Settlement], token: UUID) async throws -> Set<UUID> {
    guard !settlements.isEmpty else { return [] }
    var statuses: [String] = []
    var events: [String] = []
    var providers: [String] = []
    var providerIDs: [String] = []
    var costs: [Int64] = []
    var delays: [Int64] = []
    var uncounted: [Bool] = []
    for settlement in settlements {
      var provider = ""
      var providerID = ""
      var cost: Int64 = 0
      var delay: Int64 = 0
      var counts = true
      let status: String
      var event: String
      switch settlement.outcome {
      case .sent(let name, let id, let price):
        (status, event, provider, providerID, cost) = ("sent", "sent", name, id ?? "", price)
      case .retry(let wait, let countsAsAttempt, let eventStatus):
        (status, event, delay, counts) = ("queued", eventStatus, Self.milliseconds(wait), countsAsAttempt)
      case .dead: (status, event) = ("dead", "failed")
      case .failed: (status, event) = ("failed", "failed")
      case .bounced: (status, event) = ("bounced", "bounced")
      case .unknown(let name): (status, event, provider) = ("unknown", "unknown", name)
      }
      statuses.append(status)
      events.append(event)
      providers.append(provider)
      providerIDs.append(providerID)
      costs.append(cost)
      delays.append(delay)
      uncounted.append(!counts)
    }
    let rows = try await client.query(
      """
      WITH input AS (
        SELECT * FROM unnest(
          \(settlements.map(\.id))::uuid[], \(statuses)::text[], \(events)::text[], \(settlements.map(\.detail))::text[],
          \(providers)::text[], \(providerIDs)::text[], \(costs)::int8[], \(delays)::int8[], \(uncounted)::bool[],
          \(settlements.map(\.charged))::bool[]
        ) AS t(id, status, event, detail, provider, provider_message_id, cost, delay_ms, uncounted, charged)
      ), held AS (
        SELECT m.id, m.campaign_id, m.reserved_cents FROM delivery.messages m JOIN input i ON i.id = m.id
        WHERE m.status = 'sending' AND m.lease_token = \(token)
      ), updated AS (
        UPDATE delivery.messages m SET
          status = i.status,
          provider = coalesce(nullif(i.provider, ''), m.provider),
          provider_message_id = CASE WHEN i.status = 'sent' THEN nullif(i.provider_message_id, '') ELSE m.provider_message_id END,
          cost_cents = m.cost_cents + i.cost,
          last_error = CASE WHEN i.status = 'sent' THEN m.last_error ELSE nullif(i.detail, '') END,
          not_before = CASE WHEN i.status = 'queued' THEN now() + i.delay_ms * interval '1 millisecond' ELSE m.not_before END,
          attempts = m.attempts - CASE WHEN i.uncounted THEN 1 ELSE 0 END,
          ambiguous = m.ambiguous OR i.status = 'unknown',
          reserved_cents = 0, lease_expires_at = NULL, lease_token = NULL, updated_at = now()
        FROM input i
        WHERE m.id = i.id AND m.status = 'sending' AND m.lease_token = \(token)
        RETURNING m.id, i.status, i.event, i.detail, i.cost, i.charged
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail, cost_cents)
        SELECT id, event, detail, cost FROM updated
      ), spend AS (
        UPDATE delivery.spend_caps s SET
          reserved_cents = s.reserved_cents - x.released, spent_cents = s.spent_cents + x.charged, updated_at = now()
        FROM (
          SELECT h.campaign_id, sum(h.reserved_cents) AS released,
            sum(CASE WHEN u.status = 'sent' THEN least(u.cost, h.reserved_cents)
              WHEN u.status = 'unknown' OR u.charged THEN h.reserved_cents ELSE 0 END) AS charged
          FROM held h JOIN updated u ON u.id = h.id
          WHERE h.reserved_cents > 0
          GROUP BY h.campaign_id
        ) x
        WHERE s.campaign_id = x.campaign_id
      )
      SELECT id FROM updated
      """, logger: logger)
    var written = Set<UUID>()
    for try await id in rows.decode(UUID.self) { written.insert(id) }
    if written.count < settlements.count {
      logger.warning(
        "some outcomes were not written: their lease had expired and the messages were taken over",
        metadata: ["lost_leases": "\(settlements.count - written.count)"])
    }
    return written
  }

  /// Returns messages whose lease expired (their worker died or stalled) to the queue. The send
  /// may have reached the provider, so they are marked ambiguous: sent again when `resend` is
  /// set, otherwise left `unknown` for an operator (or a requeue) to decide.
  @discardableResult
  package func reclaimExpiredLeases(resend: Bool) async throws -> Int {
    // Their reservations become spend: the provider may have charged for them.
    try await client.query(
      """
      WITH expired AS (
        SELECT id, campaign_id, reserved_cents FROM delivery.messages
        WHERE status = 'sending' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED
      ), updated AS (
        UPDATE delivery.messages m SET
          status = \(resend ? "queued" : "unknown"), ambiguous = true, lease_expires_at = NULL, lease_token = NULL,
          cost_cents = m.cost_cents + m.reserved_cents, reserved_cents = 0,
          last_error = 'the worker sending it stopped before recording the outcome (lease expired)', updated_at = now()
        FROM expired e WHERE m.id = e.id
        RETURNING m.id, m.status
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail)
        SELECT id, CASE status WHEN 'queued' THEN 'retrying' ELSE 'unknown' END,
          'lease expired mid-send; the provider may have received it' FROM updated
      ), spend AS (
        UPDATE delivery.spend_caps s SET
          reserved_cents = s.reserved_cents - x.held, spent_cents = s.spent_cents + x.held, updated_at = now()
        FROM (SELECT campaign_id, sum(reserved_cents) AS held FROM expired WHERE reserved_cents > 0 GROUP BY campaign_id) x
        WHERE s.campaign_id = x.campaign_id
      )
      SELECT count(*) FROM updated
      """, logger: logger
    ).decode(Int.self).elements().first ?? 0
  }

  /// Reserves `costCents` for each of `messages` (leased by this worker, in order) against their
  /// campaign's spend cap, atomically: the cap's row is locked for the decision, and the database's
  /// constraint refuses anything past the budget. Returns how many fit (a campaign without a cap
  /// fits all) and whether other sends of the campaign still hold reservations (whose outcome may
  /// give budget back).
  package func reserveSpend(campaign: UUID, costCents: Int64, messages: [UUID]) async throws -> (granted: Int, othersInFlight: Bool) {
    guard costCents > 0, !messages.isEmpty else { return (messages.count, false) }
    return try await client.withTransaction(logger: logger) { connection in
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
    return try await client.withTransaction(logger: logger) { connection in
      let schedules = try await connection.query(
        """
        UPDATE delivery.warmup_schedules SET started_on = coalesce(started_on, current_date)
        WHERE sending_identity = \(identity)
        RETURNING daily_caps[least(cardinality(daily_caps), (current_date - started_on) + 1)]
        """, logger: logger
      ).decode(Int64.self).elements()
      guard let cap = schedules.first else { return count }
      let sent = try await connection.query(
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

  static func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
  }
}
