import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// The queue in `delivery.messages`: the batch enqueue, the workers' claim (a lease per batch),
/// their settlement of it, the reclaim of leases whose worker died, and its depth by status.
extension DeliveryStore {
  /// Writes the batch in one transaction; keys accepted before come back as duplicates, and
  /// messages to a suppressed address are recorded as suppressed (never sent).
  package func enqueue(_ messages: [QueuedMessage]) async throws -> [EnqueueOutcome] {
    guard !messages.isEmpty else { return [] }
    // One statement for the whole batch: the messages, their "queued" events, and the ids of
    // keys accepted earlier. Optional values travel as '' or the nil UUID (arrays of NULLs do
    // not bind; ids go as binary uuids, not text). The
    // earlier ids are looked up key by key through the unique index (evaluated only for keys
    // not inserted now): a join would let the planner hash the whole table for every batch.
    let iso = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    // What few messages carry (quiet hours, an answer's headers, why one fails or waits) travels
    // as one JSON text per message, '' for the rest: one array instead of seven per batch.
    let encoder = JSONEncoder()
    let extras = try messages.map { message in
      let extra = QueuedExtras(message)
      return extra.isEmpty ? "" : String(decoding: try encoder.encode(extra), as: UTF8.self)
    }
    let rows = try await client.query(
      """
      WITH input AS (
        SELECT * FROM unnest(
          \(messages.map(\.idempotencyKey))::text[], \(messages.map(\.channel))::text[], \(messages.map(\.recipient))::text[],
          \(messages.map(\.subject))::text[], \(messages.map(\.body))::text[], \(messages.map(\.format))::text[],
          \(messages.map { $0.textBody ?? "" })::text[], \(messages.map { $0.listUnsubscribeURL ?? "" })::text[],
          \(messages.map { $0.campaignID ?? Self.noID })::uuid[], \(messages.map { $0.subscriberID ?? Self.noID })::uuid[],
          \(messages.map { $0.notBefore.map { $0.formatted(iso) } ?? "" })::text[], \(extras)::text[]
        ) WITH ORDINALITY AS t(
          key, channel, recipient, subject, body, format, text_body, list_unsubscribe, campaign_id, subscriber_id, not_before,
          extras, position)
      ), parsed AS (
        SELECT t.*, CASE WHEN extras <> '' THEN extras::jsonb END AS x FROM input t
      ), inserted AS (
        INSERT INTO delivery.messages (
          idempotency_key, channel, recipient, subject, body, format, text_body, list_unsubscribe, campaign_id, subscriber_id,
          not_before, quiet_zones, quiet_start, quiet_end, in_reply_to, auto_submitted, payload, status, last_error)
        SELECT key, channel, recipient, subject, body, format, nullif(text_body, ''), nullif(list_unsubscribe, ''),
          nullif(campaign_id, \(Self.noID)),
          nullif(subscriber_id, \(Self.noID)),
          coalesce(nullif(not_before, '')::timestamptz, now()),
          CASE WHEN x ? 'quiet_zones' THEN ARRAY(SELECT jsonb_array_elements_text(x -> 'quiet_zones')) END,
          (x ->> 'quiet_start')::smallint, (x ->> 'quiet_end')::smallint, x ->> 'in_reply_to',
          coalesce((x ->> 'auto_submitted')::boolean, false), x -> 'payload',
          CASE WHEN x ? 'undeliverable' THEN 'failed' WHEN s.address IS NULL THEN 'queued' ELSE 'suppressed' END,
          CASE WHEN x ? 'undeliverable' THEN x ->> 'undeliverable'
            WHEN s.address IS NOT NULL THEN 'the address is on the suppression list (' || s.reason || ')'
            ELSE x ->> 'note' END
        FROM parsed input LEFT JOIN delivery.suppressions s ON s.address = delivery.suppression_key(input.channel, input.recipient)
        ORDER BY position
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, idempotency_key, status, last_error
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail) SELECT id, status, last_error FROM inserted
      )
      SELECT i.key, coalesce(n.id, (SELECT m.id FROM delivery.messages m WHERE m.idempotency_key = i.key)),
        n.id IS NULL, coalesce(n.status = 'suppressed', false)
      FROM input i
      LEFT JOIN inserted n ON n.idempotency_key = i.key
      ORDER BY i.position
      """, logger: logger)
    var outcomes: [EnqueueOutcome] = []
    outcomes.reserveCapacity(messages.count)
    var seen = Set<String>()
    for try await (key, id, existed, suppressed) in rows.decode((String, UUID?, Bool, Bool).self) {
      guard let id else { throw PostgresError.protocol("idempotency key \(key) conflicted but no message holds it") }
      // A key given twice in one batch is queued once; the second is a duplicate.
      let duplicate = existed || !seen.insert(key).inserted
      outcomes.append(EnqueueOutcome(idempotencyKey: key, messageID: id, duplicate: duplicate, suppressed: suppressed && !duplicate))
    }
    return outcomes
  }

  /// Messages by status, and how many were ambiguous sends, in one scan.
  package func countsByStatus() async throws -> (byStatus: [String: Int64], ambiguous: Int64) {
    var counts: [String: Int64] = [:]
    var ambiguous: Int64 = 0
    let rows = try await client.query(
      "SELECT status, count(*), count(*) FILTER (WHERE ambiguous) FROM delivery.messages GROUP BY status", logger: logger)
    for try await (status, count, unclear) in rows.decode((String, Int64, Int64).self) {
      counts[status] = count
      ambiguous += unclear
    }
    return (counts, ambiguous)
  }

  /// The statuses `queueDepth` counts.
  package static let depthStatuses = ["queued", "sending", "dead", "unknown", "held"]

  /// Messages of the statuses the queue works on (queued, sending), of those that wait for an
  /// operator (dead, unknown) and of paused campaigns (held), each counted through its partial
  /// index (`messages_due_idx`, `messages_lease_idx`, `messages_attention_idx`,
  /// `messages_held_idx`), never by a scan of the whole table: what a metrics scrape reads.
  package func queueDepth() async throws -> [String: Int64] {
    let rows = try await client.query(
      """
      SELECT
        (SELECT count(*) FROM delivery.messages WHERE status = 'queued'),
        (SELECT count(*) FROM delivery.messages WHERE status = 'sending'),
        (SELECT count(*) FROM delivery.messages WHERE status = 'dead'),
        (SELECT count(*) FROM delivery.messages WHERE status = 'unknown'),
        (SELECT count(*) FROM delivery.messages WHERE status = 'held')
      """, logger: logger
    ).decode((Int64, Int64, Int64, Int64, Int64).self).elements()
    guard let (queued, sending, dead, unknown, held) = rows.first else { return [:] }
    return ["queued": queued, "sending": sending, "dead": dead, "unknown": unknown, "held": held]
  }

  /// Claims up to `limit` due messages of `channels` with `FOR UPDATE SKIP LOCKED` (replicas never
  /// share one), leases them for `lease` under `token`, and records the transition. Messages to a
  /// suppressed address, queued longer than `timeToLive`, or of a campaign held or cancelled since
  /// they were queued (`held`, `cancelled`), are settled by the claim itself; an SMS due outside
  /// its quiet hours goes back to the queue until the window opens in the last of its zones that
  /// is outside it (a `deferred` event says until when; the enqueue already put it at a time when
  /// every zone is inside, so this happens to texts that came due later than planned). Messages
  /// of a channel without an enabled provider stay queued until one is configured. `at` stands
  /// for the time now (tests pass it in).
  package func claim(
    limit: Int, lease: Duration, token: UUID, timeToLive: Duration,
    channels: [String] = ["email", "sms", "push", "whatsapp"], at: Date? = nil
  ) async throws -> [ClaimedMessage] {
    guard !channels.isEmpty else { return [] }
    let rows = try await client.query(
      """
      WITH clock AS (
        SELECT coalesce(\(at)::timestamptz, now()) AS now
      ), due AS (
        SELECT id FROM delivery.messages
        WHERE status = 'queued' AND not_before <= (SELECT now FROM clock) AND channel = ANY(\(channels)::text[])
        ORDER BY not_before
        LIMIT \(limit)
        FOR UPDATE SKIP LOCKED
      ), decided AS (
        SELECT m.id,
          CASE
            WHEN m.created_at < now() - \(Self.milliseconds(timeToLive)) * interval '1 millisecond' THEN 'expired'
            WHEN h.action = 'cancel' THEN 'cancelled'
            WHEN h.action = 'hold' THEN 'held'
            -- A compliance reply (the confirmation of a STOP, the help text) goes to a suppressed number.
            WHEN NOT m.compliance AND EXISTS (SELECT 1 FROM delivery.suppressions s WHERE s.address = delivery.suppression_key(m.channel, m.recipient))
              THEN 'suppressed'
            WHEN q.until IS NOT NULL THEN 'deferred'
            ELSE 'sending'
          END AS status,
          h.reason AS hold_reason, q.until
        FROM delivery.messages m JOIN due ON due.id = m.id CROSS JOIN clock c
        -- A message of a campaign held or cancelled since it was queued (see DeliveryStore+Holds).
        -- The hold is locked (only when there is one): a release waits for this claim, and this
        -- claim for a release under way, so no message is left held after its release.
        LEFT JOIN LATERAL (
          SELECT action, reason FROM delivery.campaign_holds WHERE campaign_id = m.campaign_id FOR SHARE
        ) h ON true
        -- Quiet hours: in each of the recipient's zones outside the window, when it next opens
        -- there; the latest of those (NULL when every zone is inside it, or it has none).
        -- Only texts with quiet hours pay for it (the CASE skips the subquery for the rest).
        LEFT JOIN LATERAL (
          SELECT CASE WHEN m.quiet_zones IS NULL OR m.compliance OR m.quiet_start = m.quiet_end THEN NULL ELSE (
            SELECT max((CASE WHEN l.minute < m.quiet_start THEN l.day ELSE l.day + interval '1 day' END
                + m.quiet_start * interval '1 minute') AT TIME ZONE l.zone)
            FROM (
              SELECT z AS zone, date_trunc('day', c.now AT TIME ZONE z) AS day,
                (extract(hour FROM c.now AT TIME ZONE z) * 60 + extract(minute FROM c.now AT TIME ZONE z))::int AS minute
              FROM unnest(m.quiet_zones) z
            ) l
            WHERE NOT CASE
              WHEN m.quiet_start < m.quiet_end THEN l.minute >= m.quiet_start AND l.minute < m.quiet_end
              ELSE l.minute >= m.quiet_start OR l.minute < m.quiet_end END
          ) END AS until
        ) q ON true
      ), claimed AS (
        UPDATE delivery.messages m SET
          status = CASE WHEN d.status = 'deferred' THEN 'queued' ELSE d.status END,
          not_before = CASE WHEN d.status = 'deferred' THEN d.until ELSE m.not_before END,
          attempts = m.attempts + CASE WHEN d.status = 'sending' THEN 1 ELSE 0 END,
          lease_expires_at = CASE WHEN d.status = 'sending' THEN now() + \(Self.milliseconds(lease)) * interval '1 millisecond' END,
          lease_token = CASE WHEN d.status = 'sending' THEN \(token) END,
          last_error = CASE d.status
            WHEN 'expired' THEN 'not sent within its time to live'
            WHEN 'suppressed' THEN 'the address is on the suppression list'
            WHEN 'cancelled' THEN 'its campaign was cancelled' || CASE WHEN d.hold_reason = '' THEN '' ELSE ': ' || d.hold_reason END
            WHEN 'held' THEN 'its campaign is paused' || CASE WHEN d.hold_reason = '' THEN '' ELSE ': ' || d.hold_reason END
            WHEN 'deferred' THEN 'quiet hours (' || to_char(make_time(m.quiet_start / 60, m.quiet_start % 60, 0), 'HH24:MI') || '-'
              || to_char(make_time(m.quiet_end / 60, m.quiet_end % 60, 0), 'HH24:MI') || ' in '
              || CASE WHEN cardinality(m.quiet_zones) = 1 THEN m.quiet_zones[1]
                ELSE cardinality(m.quiet_zones) || ' time zones of the number''s country' END
              || '): waits until ' || to_char(d.until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            ELSE m.last_error END,
          updated_at = now()
        FROM decided d WHERE m.id = d.id
        RETURNING m.id, m.idempotency_key, m.channel, m.recipient, m.subject, m.body, m.format, m.text_body,
          m.list_unsubscribe, m.campaign_id, m.subscriber_id, m.attempts, d.status, m.last_error, m.in_reply_to, m.auto_submitted,
          m.payload
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail)
        SELECT id, status, CASE WHEN status = 'sending' THEN 'attempt ' || attempts ELSE last_error END FROM claimed
      )
      SELECT id, idempotency_key, channel, recipient, subject, body, format, text_body, list_unsubscribe, campaign_id, attempts,
        status, in_reply_to, auto_submitted, payload::text
      FROM claimed
      """, logger: logger)
    var claimed: [ClaimedMessage] = []
    for try await (
      id, key, channel, recipient, subject, body, format, textBody, unsubscribe, campaign, attempts, status, answered, automatic,
      payload
    )
      in rows
      .decode((UUID, String, String, String, String, String, String, String?, String?, UUID?, Int, String, String?, Bool, String?).self)
    {
      claimed.append(
        ClaimedMessage(
          message: OutgoingMessage(
            id: id, idempotencyKey: key, channel: channel, recipient: recipient, subject: subject, body: body, format: format,
            textBody: textBody, listUnsubscribeURL: unsubscribe, campaignID: campaign, inReplyTo: answered,
            autoSubmitted: automatic, payload: try payload.map { try Self.payloadDecoder.decode(ChannelPayload.self, from: Data($0.utf8)) }),
          attempts: attempts, status: status))
    }
    return claimed
  }

  /// Writes the outcomes of a leased batch (see `settle(_:token:beginning:resendable:lastOfBatch:)`);
  /// returns the ids written.
  @discardableResult
  package func settle(_ settlements: [Settlement], token: UUID) async throws -> Set<UUID> {
    try await settle(settlements, token: token, beginning: [], resendable: [], lastOfBatch: true).written
  }

  /// Writes outcomes of a leased batch and their events in one statement, and turns each
  /// message's spend reservation into spend (sent; or unknown, which may have been charged) or
  /// gives it back. Only messages still leased under `token` are touched (a lease that expired and
  /// was taken over is not overwritten): `written`.
  ///
  /// The same statement records in the send journal (one row) that the sends of `beginning` are
  /// about to begin (`resendable`: those whose providers all drop or allow a second copy), for
  /// those still leased under `token` with time left: `begun`, the only ones the worker may send.
  /// Their rows are locked while it does, so a reclaim either waits and finds them in the journal,
  /// or has taken them back first and they are not begun. With `lastOfBatch` it deletes the
  /// batch's journal rows. A reclaim reads them (`reclaimExpiredLeases`).
  package func settle(
    _ settlements: [Settlement], token: UUID, beginning: [UUID], resendable: [UUID], lastOfBatch: Bool
  ) async throws -> (written: Set<UUID>, begun: Set<UUID>) {
    guard !settlements.isEmpty || !beginning.isEmpty || lastOfBatch else { return ([], []) }
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
      ), leased AS (
        SELECT id FROM delivery.messages
        WHERE id = ANY (\(beginning)::uuid[]) AND status = 'sending' AND lease_token = \(token) AND lease_expires_at > now()
        FOR SHARE
      ), begun AS (
        INSERT INTO delivery.send_journal (lease_token, message_ids, resendable)
        SELECT \(token), array_agg(id), coalesce(array_agg(id) FILTER (WHERE id = ANY (\(resendable)::uuid[])), '{}')
        FROM leased HAVING count(*) > 0
        RETURNING message_ids
      ), ended AS (
        DELETE FROM delivery.send_journal WHERE lease_token = \(token) AND \(lastOfBatch)::boolean
      )
      SELECT id, true FROM updated
      UNION ALL
      SELECT unnest(message_ids), false FROM begun
      """, logger: logger)
    var written = Set<UUID>()
    var begun = Set<UUID>()
    for try await (id, settled) in rows.decode((UUID, Bool).self) {
      if settled { written.insert(id) } else { begun.insert(id) }
    }
    if written.count < settlements.count {
      logger.warning(
        "some outcomes were not written: their lease had expired and the messages were taken over",
        metadata: ["lost_leases": "\(settlements.count - written.count)"])
    }
    return (written, begun)
  }

  /// What a reclaim did with the messages whose lease expired.
  package struct Reclaimed: Sendable, Equatable {
    /// Never handed to a provider (not in the send journal): back in the queue as they were.
    package var requeued = 0
    /// Possibly sent, to providers that drop a second copy or may resend: sent again.
    package var resent = 0
    /// Possibly sent, and not resendable: left `unknown` for an operator.
    package var unknown = 0
    package var total: Int { requeued + resent + unknown }
  }

  /// Takes back the messages whose lease expired (their worker died or stalled), deciding by the
  /// send journal: a message whose send never began goes back to the queue as it was (its
  /// attempt and spend reservation given back); one whose send began may have reached the
  /// provider, so it is marked ambiguous and its reservation becomes spend, and it is sent again
  /// when its providers drop a second copy or allow resending (or `resendAll`), else left
  /// `unknown`. Each decision is an event with its reason.
  @discardableResult
  package func reclaimExpiredLeases(resendAll: Bool) async throws -> Reclaimed {
    let rows = try await client.query(
      """
      WITH expired AS (
        SELECT m.id, m.campaign_id, m.reserved_cents, m.lease_token,
          EXISTS (
            SELECT 1 FROM delivery.send_journal j WHERE j.lease_token = m.lease_token AND m.id = ANY (j.message_ids)
          ) AS begun,
          EXISTS (
            SELECT 1 FROM delivery.send_journal j WHERE j.lease_token = m.lease_token AND m.id = ANY (j.resendable)
          ) AS resendable
        FROM delivery.messages m
        WHERE m.status = 'sending' AND m.lease_expires_at < now()
        FOR UPDATE OF m SKIP LOCKED
      ), decided AS (
        SELECT *, CASE WHEN NOT begun THEN 'requeued' WHEN resendable OR \(resendAll)::boolean THEN 'resent' ELSE 'unknown' END AS decision
        FROM expired
      ), updated AS (
        UPDATE delivery.messages m SET
          status = CASE d.decision WHEN 'unknown' THEN 'unknown' ELSE 'queued' END,
          ambiguous = m.ambiguous OR d.begun,
          attempts = m.attempts - CASE WHEN d.begun THEN 0 ELSE 1 END,
          lease_expires_at = NULL, lease_token = NULL,
          cost_cents = m.cost_cents + CASE WHEN d.begun THEN m.reserved_cents ELSE 0 END, reserved_cents = 0,
          last_error = CASE WHEN d.begun THEN 'the worker sending it stopped before recording the outcome (lease expired)'
            ELSE m.last_error END,
          updated_at = now()
        FROM decided d WHERE m.id = d.id
        RETURNING m.id, d.decision
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail)
        SELECT id,
          CASE decision WHEN 'requeued' THEN 'deferred' WHEN 'resent' THEN 'retrying' ELSE 'unknown' END,
          CASE decision
            WHEN 'requeued' THEN 'back in the queue: the worker that leased it stopped before handing it to a provider'
            WHEN 'resent' THEN 'sent again: the worker stopped mid-send; its providers drop a second copy (same idempotency key) or may resend'
            ELSE 'left unknown: the worker stopped mid-send and the provider may have received it; it does not drop a second copy, so it is not resent (requeue it, or set resend_unconfirmed on the provider)'
          END
        FROM updated
      ), spend AS (
        -- A send that began may have been charged: its reservation becomes spend; the rest is given back.
        UPDATE delivery.spend_caps s SET
          reserved_cents = s.reserved_cents - x.held, spent_cents = s.spent_cents + x.charged, updated_at = now()
        FROM (
          SELECT campaign_id, sum(reserved_cents) AS held, sum(CASE WHEN begun THEN reserved_cents ELSE 0 END) AS charged
          FROM expired WHERE reserved_cents > 0 GROUP BY campaign_id
        ) x
        WHERE s.campaign_id = x.campaign_id
      ), journal AS (
        -- The groups of the expired leases; and any left by a worker that stopped after its
        -- lease was taken back (its settle, which deletes them, never came).
        DELETE FROM delivery.send_journal
        WHERE lease_token IN (SELECT lease_token FROM expired) OR begun_at < now() - interval '1 day'
      )
      SELECT decision, count(*)::int FROM updated GROUP BY decision
      """, logger: logger)
    var reclaimed = Reclaimed()
    for try await (decision, count) in rows.decode((String, Int).self) {
      switch decision {
      case "requeued": reclaimed.requeued = count
      case "resent": reclaimed.resent = count
      default: reclaimed.unknown = count
      }
    }
    return reclaimed
  }
}
