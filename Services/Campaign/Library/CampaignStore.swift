import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// Every SQL statement of the campaign service, on its own `campaign` schema, by area:
/// subscribers (`CampaignStore+Subscribers.swift`), lists, segments, templates, campaigns and the
/// audience expansion (`+Campaigns`), the outbox that the relay and the scheduler work through
/// (`+Outbox`), analytics (`+Analytics`: the delivery feed, daily rollups, engagement) and the
/// bulk import (`+Import`). Errors that callers can act on are thrown as RPC errors naming the
/// field, or as `CampaignStoreError`.
package struct CampaignStore: Sendable {
  /// Channels a campaign can be sent on today; the others are refused at send time (SPEC §2).
  package static let deliverableChannels: Set<String> = ["email", "sms"]
  package static let maxMembersPerCall = 1000

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

  static func duplicateName(_ kind: String, _ name: String) -> RPCError {
    RPCError.field("name", .alreadyExists, "a \(kind) named '\(name)' already exists")
  }

  static func notFound(_ kind: String, _ id: UUID, field: String = "id") -> RPCError {
    RPCError.field(field, .notFound, "no \(kind) has id \(id.lowercasedString)")
  }
}

/// What the store reports about subscribers that callers map to their own errors.
package enum CampaignStoreError: Error, Equatable {
  /// The normalised e-mail or phone belongs to another subscriber.
  case duplicate(field: String)
  /// A page token that does not name a subscriber.
  case badPageToken
}
