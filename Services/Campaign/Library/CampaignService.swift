import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// `herald.campaign.v1.CampaignService` (SPEC §2): its handlers check requests and map between
/// protobuf messages and the store's records, by area: subscribers
/// (`CampaignService+Subscribers.swift`), lists, segments, templates, campaigns, analytics and the
/// bulk import. Every statement is the store's (`CampaignStore`).
package struct CampaignService: Herald_Campaign_V1_CampaignService.SimpleServiceProtocol {
  let store: CampaignStore
  /// Checks the tokens of unsubscribe links.
  let links: UnsubscribeLinks
  /// The currency and attribution window of conversions (SPEC §13).
  let results: ResultsSettings
  /// Which channels delivery serves: a push or WhatsApp campaign is refused at send without one.
  let providers: (any ProviderDirectory)?

  package init(
    store: CampaignStore, links: UnsubscribeLinks = .none, results: ResultsSettings = ResultsSettings(),
    providers: (any ProviderDirectory)? = nil
  ) {
    self.store = store
    self.links = links
    self.results = results
    self.providers = providers
  }

  /// A subscriber id from the request's `id`.
  static func id(_ text: String) throws -> UUID {
    guard let id = UUID(text: text) else { throw RPCError.field("id", .invalidArgument, "id '\(text)' is not a UUID") }
    return id
  }

  /// A required id naming `field` when it is missing or malformed.
  static func uuid(_ text: String, field: String) throws -> UUID {
    guard !text.isEmpty else { throw RPCError.field(field, .invalidArgument, "\(field) is required") }
    return try RPCError.uuid(text, field: field)
  }

  /// The name of a list, segment, template or campaign: trimmed, 1 to 200 characters.
  static func name(_ text: String) throws -> String {
    let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !name.isEmpty, name.count <= 200 else { throw RPCError.field("name", .invalidArgument, "name must be 1 to 200 characters") }
    return name
  }

  static func invalid(_ error: SubscriberValidation.Invalid) -> RPCError {
    RPCError.field(error.field, .invalidArgument, error.message)
  }
}
