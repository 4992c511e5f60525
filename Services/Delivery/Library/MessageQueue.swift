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

package protocol MessageQueue: Sendable {
  /// Writes the batch in one transaction; keys accepted before come back as duplicates.
  func enqueue(_ messages: [QueuedMessage]) async throws -> [EnqueueOutcome]
  func countsByStatus() async throws -> [String: Int64]
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
}
