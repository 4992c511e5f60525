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
}

package struct EnqueueOutcome: Sendable, Equatable {
  package var idempotencyKey: String
  package var messageID: UUID
  package var duplicate: Bool
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

package protocol MessageQueue: Sendable {
  /// Writes the batch in one transaction; keys accepted before come back as duplicates.
  func enqueue(_ messages: [QueuedMessage]) async throws -> [EnqueueOutcome]
  func countsByStatus() async throws -> [String: Int64]
  /// Events after `cursor` whose transactions can no longer be joined by an earlier one.
  func events(after cursor: FeedCursor, limit: Int) async throws -> (events: [FeedEvent], next: FeedCursor)
}

package struct PostgresMessageQueue: MessageQueue {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  package func enqueue(_ messages: [QueuedMessage]) async throws -> [EnqueueOutcome] {
    let logger = self.logger
    return try await client.withTransaction(logger: logger) { connection in
      var outcomes: [EnqueueOutcome] = []
      outcomes.reserveCapacity(messages.count)
      for message in messages {
        let inserted = try await connection.query(
          """
          INSERT INTO delivery.messages (
            idempotency_key, channel, recipient, subject, body, campaign_id, subscriber_id, not_before)
          VALUES (
            \(message.idempotencyKey), \(message.channel), \(message.recipient), \(message.subject), \(message.body),
            \(message.campaignID), \(message.subscriberID), COALESCE(\(message.notBefore), now()))
          ON CONFLICT (idempotency_key) DO NOTHING
          RETURNING id
          """, logger: logger
        ).collect().first?.decode(UUID.self)
        if let id = inserted {
          try await connection.query(
            "INSERT INTO delivery.delivery_events (message_id, status) VALUES (\(id), 'queued')", logger: logger)
          outcomes.append(EnqueueOutcome(idempotencyKey: message.idempotencyKey, messageID: id, duplicate: false))
        } else {
          let existing = try await connection.query(
            "SELECT id FROM delivery.messages WHERE idempotency_key = \(message.idempotencyKey)", logger: logger
          ).collect().first?.decode(UUID.self)
          guard let existing else {
            throw PostgresError.protocol("idempotency key conflicted but no message holds it")
          }
          outcomes.append(EnqueueOutcome(idempotencyKey: message.idempotencyKey, messageID: existing, duplicate: true))
        }
      }
      return outcomes
    }
  }

  package func countsByStatus() async throws -> [String: Int64] {
    var counts: [String: Int64] = [:]
    let rows = try await client.query(
      "SELECT status, count(*) FROM delivery.messages GROUP BY status", logger: logger)
    for try await (status, count) in rows.decode((String, Int64).self) {
      counts[status] = count
    }
    return counts
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
