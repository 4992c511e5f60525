import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Metrics
import SwiftProtobuf

/// Provider webhooks: delivery reports signed with the provider's webhook secret, applied to
/// the messages they name.
extension DeliveryService {
  /// Checked against when a webhook names no provider with a secret: random, never shown.
  static let unguessableSecret = UUID().uuidString + UUID().uuidString

  static let webhookTypes: Set<String> = ["delivered", "bounced", "failed", "opened", "clicked", "complained"]

  package func ingestProviderWebhook(
    request: Herald_Delivery_V1_IngestProviderWebhookRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_IngestProviderWebhookResponse {
    // The table is reloaded every few seconds; a provider this replica has not seen yet is looked up now.
    if providers.entry(named: request.provider) == nil { try await providers.refresh() }
    // An unknown provider, or one without a webhook secret, is refused exactly as a bad signature
    // is (the same checks run against a secret nobody knows), so that nobody can find out which
    // provider names exist.
    let secret = providers.entry(named: request.provider)?.config.webhookSecret
    do throws(WebhookSignature.Problem) {
      try WebhookSignature.verify(header: request.signature, secret: secret ?? Self.unguessableSecret, body: request.body)
      guard secret != nil else { throw WebhookSignature.Problem.mismatch }
    } catch {
      throw RPCError.field("signature", .unauthenticated, error.description)
    }
    if request.verifyOnly { return .init() }
    let events = try Self.parseWebhook(request.body)
    let (applied, ignored) = try await store.apply(events, provider: request.provider)
    // Counted only once the signature is verified: the provider label is always a configured name.
    for (type, count) in Dictionary(grouping: applied, by: \.type).mapValues(\.count) {
      Counter(label: "herald_delivery_webhook_events_total", dimensions: [("provider", request.provider), ("type", type)])
        .increment(by: count)
    }
    var response = Herald_Delivery_V1_IngestProviderWebhookResponse()
    response.applied = Int32(applied.count)
    response.ignored = Int32(ignored.count)
    response.notes = ignored
    return response
  }

  /// `{"events": [{"type": "delivered", "message_id": "...", "provider_message_id": "...",
  /// "bounce": "hard", "detail": "..."}]}`; every problem names its field, and nothing is applied
  /// when one event is malformed.
  static func parseWebhook(_ body: Data) throws -> [ProviderEvent] {
    guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
      throw RPCError.field("body", .invalidArgument, "the webhook body is not a JSON object")
    }
    guard let list = object["events"] as? [Any] else {
      throw RPCError.field("events", .invalidArgument, "events is missing or not an array")
    }
    guard list.count <= 1000 else {
      throw RPCError.field("events", .invalidArgument, "events holds \(list.count); at most 1,000 per call")
    }
    return try list.enumerated().map { index, item in
      let field = "events[\(index)]"
      guard let event = item as? [String: Any] else {
        throw RPCError.field(field, .invalidArgument, "\(field) is not an object")
      }
      guard let type = event["type"] as? String, webhookTypes.contains(type) else {
        throw RPCError.field(
          "\(field).type", .invalidArgument, "\(field).type must be one of \(webhookTypes.sorted().joined(separator: ", "))")
      }
      var messageID: UUID?
      if let text = event["message_id"] as? String, !text.isEmpty {
        messageID = try RPCError.uuid(text, field: "\(field).message_id")
      }
      // Text the database cannot store (NUL) is refused naming its field, before anything is applied.
      for name in ["provider_message_id", "detail"] {
        if let text = event[name] as? String, text.utf8.contains(0) {
          throw RPCError.field(
            "\(field).\(name)", .invalidArgument, StringFieldCheck.holdsNUL("\(field).\(name)"))
        }
      }
      let providerID = (event["provider_message_id"] as? String).flatMap { $0.isEmpty ? nil : $0 }
      guard messageID != nil || providerID != nil else {
        throw RPCError.field("\(field).message_id", .invalidArgument, "\(field) names no message: give message_id or provider_message_id")
      }
      let bounce = event["bounce"] as? String
      if let bounce, !["hard", "soft"].contains(bounce) {
        throw RPCError.field("\(field).bounce", .invalidArgument, "\(field).bounce must be hard or soft")
      }
      return ProviderEvent(
        type: type, messageID: messageID, providerMessageID: providerID, bounce: bounce,
        detail: String((event["detail"] as? String ?? "").prefix(1000)))
    }
  }
}
