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
  /// Channels a campaign can be sent on (SPEC §2; push and WhatsApp since issue 23).
  package static let deliverableChannels: Set<String> = ["email", "sms", "push", "whatsapp"]
  /// Channels whose campaigns are refused at send while delivery has no enabled provider for
  /// them ("no provider for channel ..."); e-mail and SMS wait in delivery's queue for one.
  package static let providerCheckedChannels: Set<String> = ["push", "whatsapp"]

  /// Why a campaign of `channel` cannot start, given the channels delivery serves (nil: not asked).
  static func providerProblem(_ channel: String, served: Set<String>?) -> String? {
    guard deliverableChannels.contains(channel) else { return "no provider for channel \(channel)" }
    guard providerCheckedChannels.contains(channel), let served, !served.contains(channel) else { return nil }
    return "no provider for channel \(channel): configure an enabled one in delivery first (PUT /v1/providers/{name})"
  }

  /// Whether subscriber `s` may be sent a channel's messages: its consent (push: a live token).
  static func consentSQL(_ channel: String) -> String {
    switch channel {
    case "email": "s.email_subscribed"
    case "whatsapp": "s.whatsapp_subscribed"
    case "push": "EXISTS (SELECT 1 FROM campaign.push_tokens pt WHERE pt.subscriber_id = s.id AND pt.retired_at IS NULL)"
    default: "s.sms_subscribed"
    }
  }

  /// Where subscriber `s`'s message of a channel goes: the e-mail, phone or WhatsApp number, and
  /// for push the platform and token of its most recently seen live token ("apns:<token>").
  static func addressSQL(_ channel: String) -> String {
    switch channel {
    case "email": "s.email"
    case "whatsapp": "s.whatsapp"
    case "push":
      """
      (SELECT pt.platform || ':' || pt.token FROM campaign.push_tokens pt
        WHERE pt.subscriber_id = s.id AND pt.retired_at IS NULL ORDER BY pt.last_seen_at DESC, pt.id DESC LIMIT 1)
      """
    default: "s.phone"
    }
  }
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
