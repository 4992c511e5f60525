import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.delivery.v1.DeliveryService`.
package struct DeliveryService: Herald_Delivery_V1_DeliveryService.SimpleServiceProtocol {
  package static let maxBatch = 1000
  let queue: PostgresMessageQueue
  let providers: ProviderRegistry

  package init(queue: PostgresMessageQueue, providers: ProviderRegistry) {
    self.queue = queue
    self.providers = providers
  }

  package func enqueueMessages(
    request: Herald_Delivery_V1_EnqueueMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse {
    guard !request.messages.isEmpty else {
      throw RPCError.field("messages", .invalidArgument, "messages is empty")
    }
    guard request.messages.count <= Self.maxBatch else {
      throw RPCError.field(
        "messages", .invalidArgument, "messages holds \(request.messages.count); at most \(Self.maxBatch) per batch")
    }
    let messages = try request.messages.enumerated().map { index, message in
      try Self.validate(message, field: "messages[\(index)]")
    }
    var caps: [(UUID, Int64)] = []
    for (index, cap) in request.spendCaps.enumerated() {
      let campaign = try RPCError.uuid(cap.campaignID, field: "spend_caps[\(index)].campaign_id")
      guard cap.budgetCents >= 0 else {
        throw RPCError.field("spend_caps[\(index)].budget_cents", .invalidArgument, "spend_caps[\(index)].budget_cents must not be negative")
      }
      caps.append((campaign, cap.budgetCents))
    }
    // The caps are written before the messages, so no worker can send one of them uncapped.
    try await queue.setSpendCaps(caps)
    let outcomes = try await queue.enqueue(messages)
    var response = Herald_Delivery_V1_EnqueueMessagesResponse()
    response.results = outcomes.map { outcome in
      var result = Herald_Delivery_V1_EnqueueResult()
      result.idempotencyKey = outcome.idempotencyKey
      result.messageID = outcome.messageID.lowercasedString
      result.duplicate = outcome.duplicate
      result.suppressed = outcome.suppressed
      return result
    }
    response.duplicates = Int32(outcomes.count { $0.duplicate })
    response.suppressed = Int32(outcomes.count { $0.suppressed })
    response.accepted = Int32(outcomes.count) - response.duplicates
    return response
  }

  package func getQueueStats(
    request: Herald_Delivery_V1_GetQueueStatsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_QueueStats {
    var stats = Herald_Delivery_V1_QueueStats()
    (stats.byStatus, stats.ambiguous) = try await queue.countsByStatus()
    stats.total = stats.byStatus.values.reduce(0, +)
    return stats
  }

  package func listDeliveryEvents(
    request: Herald_Delivery_V1_ListDeliveryEventsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse {
    guard let cursor = FeedCursor(request.cursor) else {
      throw RPCError.field("cursor", .invalidArgument, "cursor '\(request.cursor)' is not one this service gave out")
    }
    guard (0...5000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 5,000 (0 means 1,000)")
    }
    let (events, next) = try await queue.events(after: cursor, limit: request.limit == 0 ? 1000 : Int(request.limit))
    var response = Herald_Delivery_V1_ListDeliveryEventsResponse()
    response.events = events.map(Self.event)
    response.nextCursor = next.text
    return response
  }

  /// A single transactional message (`POST /v1/messages`): queued like one of a batch; a key
  /// accepted before answers the earlier message, marked duplicate.
  package func sendMessage(
    request: Herald_Delivery_V1_OutboundMessage, context: ServerContext
  ) async throws -> Herald_Delivery_V1_EnqueueResult {
    let outcomes = try await queue.enqueue([try Self.validate(request, field: "")])
    guard let outcome = outcomes.first else { throw RPCError(code: .internalError, message: "the queue answered no outcome") }
    var result = Herald_Delivery_V1_EnqueueResult()
    result.idempotencyKey = outcome.idempotencyKey
    result.messageID = outcome.messageID.lowercasedString
    result.duplicate = outcome.duplicate
    result.suppressed = outcome.suppressed
    return result
  }

  /// Checks a message (`messages[i]` of a batch, or a whole request when `prefix` is empty); the
  /// field's name is spelled out only when it is wrong.
  static func validate(_ message: Herald_Delivery_V1_OutboundMessage, field prefix: @autoclosure () -> String) throws -> QueuedMessage {
    func name(_ field: String) -> String {
      let prefix = prefix()
      return prefix.isEmpty ? field : "\(prefix).\(field)"
    }
    let key = message.idempotencyKey
    guard !key.isEmpty, key.utf8.count <= 200 else {
      throw RPCError.field(name("idempotency_key"), .invalidArgument, "\(name("idempotency_key")) must be 1 to 200 bytes")
    }
    guard let channel = Self.channelName(message.channel) else {
      throw RPCError.field(name("channel"), .invalidArgument, "\(name("channel")) must be email, sms, push or whatsapp")
    }
    guard !message.recipient.allSatisfy(\.isWhitespace) else {
      throw RPCError.field(name("recipient"), .invalidArgument, "\(name("recipient")) is empty")
    }
    guard !message.body.isEmpty else {
      throw RPCError.field(name("body"), .invalidArgument, "\(name("body")) is empty")
    }
    func uuid(_ text: String, _ field: String) throws -> UUID? {
      text.isEmpty ? nil : try RPCError.uuid(text, field: name(field))
    }
    return QueuedMessage(
      idempotencyKey: key, channel: channel, recipient: message.recipient, subject: message.subject, body: message.body,
      campaignID: try uuid(message.campaignID, "campaign_id"),
      subscriberID: try uuid(message.subscriberID, "subscriber_id"),
      notBefore: message.hasNotBefore ? message.notBefore.date : nil)
  }

  static func channelName(_ channel: Herald_Delivery_V1_Channel) -> String? {
    switch channel {
    case .email: "email"
    case .sms: "sms"
    case .push: "push"
    case .whatsapp: "whatsapp"
    case .unspecified, .UNRECOGNIZED: nil
    }
  }

  static func channel(_ name: String) -> Herald_Delivery_V1_Channel {
    switch name {
    case "email": .email
    case "sms": .sms
    case "push": .push
    case "whatsapp": .whatsapp
    default: .unspecified
    }
  }
}
