import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// Every SQL statement of the delivery service, on its own `delivery` schema, by area: the queue
/// the workers enqueue into, claim from and settle (`DeliveryStore+Queue.swift`, with the leases),
/// spend caps and warm-up allowances (`+Spend`), the operators' view of messages, requeues,
/// provider webhooks and suppressions (`+Admin`), the providers table (`+Providers`) and the
/// events feed the campaign service reads (`+Feed`) and the DKIM keys (`+DKIM`). Every transition of a message is recorded in
/// `delivery.delivery_events` by the statement that makes it.
package struct DeliveryStore: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// A transaction whose closure errors come back as thrown (`PostgresClient.transaction`).
  func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
    try await client.transaction(logger: logger, body)
  }

  /// Stands for "none" in a uuid array (no random or generated id is all zeros).
  static let noID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
  /// Reads a message's stored payload (push, WhatsApp template).
  static let payloadDecoder = JSONDecoder()

  static func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
  }
}
