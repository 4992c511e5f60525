import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

package struct QueuedMessage: Sendable, Equatable {
  package var idempotencyKey: String
  package var channel: String
  package var recipient: String
  package var subject: String
  package var body: String
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var notBefore: Date?

  package init(
    idempotencyKey: String, channel: String, recipient: String, subject: String, body: String, campaignID: UUID? = nil,
    subscriberID: UUID? = nil, notBefore: Date? = nil
  ) {
    self.idempotencyKey = idempotencyKey
    self.channel = channel
    self.recipient = recipient
    self.subject = subject
    self.body = body
    self.campaignID = campaignID
    self.subscriberID = subscriberID
    self.notBefore = notBefore
  }
}

package struct EnqueueOutcome: Sendable, Equatable {
  package var idempotencyKey: String
  package var messageID: UUID
  package var duplicate: Bool
  package var suppressed: Bool = false
}

package struct FeedEvent: Sendable, Equatable {
  package var id: Int64
  package var messageID: UUID
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var status: String
  package var detail: String
  package var costCents: Int64
  package var occurredAt: Date
}

/// A position in the event feed: the writing transaction's id and the event's id.
package struct FeedCursor: Sendable, Equatable {
  package var transaction: UInt64
  package var event: Int64

  package static let start = FeedCursor(transaction: 0, event: 0)

  package init(transaction: UInt64, event: Int64) {
    self.transaction = transaction
    self.event = event
  }

  /// "transaction.event"; empty means the start.
  package init?(_ text: String) {
    if text.isEmpty {
      self = .start
      return
    }
    let parts = text.split(separator: ".")
    guard parts.count == 2, let transaction = UInt64(parts[0]), let event = Int64(parts[1]) else { return nil }
    self.init(transaction: transaction, event: event)
  }

  package var text: String { self == .start ? "" : "\(transaction).\(event)" }
}

/// The queue in `delivery.messages`, with every transition in `delivery.delivery_events`.
package struct PostgresMessageQueue: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// Stands for "none" in a uuid array (no random or generated id is all zeros).
  static let noID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

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
    let rows = try await client.query(
      """
      WITH input AS (
        SELECT * FROM unnest(
          \(messages.map(\.idempotencyKey))::text[], \(messages.map(\.channel))::text[], \(messages.map(\.recipient))::text[],
          \(messages.map(\.subject))::text[], \(messages.map(\.body))::text[],
          \(messages.map { $0.campaignID ?? Self.noID })::uuid[], \(messages.map { $0.subscriberID ?? Self.noID })::uuid[],
          \(messages.map { $0.notBefore.map { $0.formatted(iso) } ?? "" })::text[]
        ) WITH ORDINALITY AS t(key, channel, recipient, subject, body, campaign_id, subscriber_id, not_before, position)
      ), inserted AS (
        INSERT INTO delivery.messages (
          idempotency_key, channel, recipient, subject, body, campaign_id, subscriber_id, not_before, status, last_error)
        SELECT key, channel, recipient, subject, body, nullif(campaign_id, \(Self.noID)), nullif(subscriber_id, \(Self.noID)),
          coalesce(nullif(not_before, '')::timestamptz, now()),
          CASE WHEN s.address IS NULL THEN 'queued' ELSE 'suppressed' END,
          CASE WHEN s.address IS NOT NULL THEN 'the address is on the suppression list (' || s.reason || ')' END
        FROM input LEFT JOIN delivery.suppressions s ON s.address = lower(input.recipient)
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

  package func events(after cursor: FeedCursor, limit: Int) async throws -> (events: [FeedEvent], next: FeedCursor) {
    // Only transactions older than every one still running are served (pg_snapshot_xmin): an
    // event can then never appear behind the cursor later.
    let rows = try await client.query(
      """
      SELECT e.txid::text, e.id, e.message_id, m.campaign_id, m.subscriber_id, e.status, coalesce(e.detail, ''),
        e.cost_cents, e.occurred_at
      FROM delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id
      WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
        AND (e.txid, e.id) > (\(String(cursor.transaction))::text::xid8, \(cursor.event))
      ORDER BY e.txid, e.id
      LIMIT \(limit)
      """, logger: logger)
    var events: [FeedEvent] = []
    var next = cursor
    for try await (transaction, id, message, campaign, subscriber, status, detail, cost, at) in rows.decode(
      (String, Int64, UUID, UUID?, UUID?, String, String, Int64, Date).self)
    {
      events.append(
        FeedEvent(
          id: id, messageID: message, campaignID: campaign, subscriberID: subscriber, status: status, detail: detail,
          costCents: cost, occurredAt: at))
      next = FeedCursor(transaction: UInt64(transaction) ?? cursor.transaction, event: id)
    }
    return (events, next)
  }
}
