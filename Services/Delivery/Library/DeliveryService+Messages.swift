import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Messages and dead letters: the queue's counts, one message with its history, messages by
/// status or campaign, requeues, and the events feed the campaign service reads.
extension DeliveryService {
  package func getQueueStats(
    request: Herald_Delivery_V1_GetQueueStatsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_QueueStats {
    var stats = Herald_Delivery_V1_QueueStats()
    (stats.byStatus, stats.ambiguous) = try await store.countsByStatus()
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
    let (events, next) = try await store.events(after: cursor, limit: request.limit == 0 ? 1000 : Int(request.limit))
    var response = Herald_Delivery_V1_ListDeliveryEventsResponse()
    response.events = events.map(Self.event)
    response.nextCursor = next.text
    return response
  }

  static func message(_ record: MessageRecord) -> Herald_Delivery_V1_Message {
    var message = Herald_Delivery_V1_Message()
    message.id = record.id.lowercasedString
    message.idempotencyKey = record.idempotencyKey
    message.channel = channel(record.channel)
    message.recipient = record.recipient
    message.campaignID = record.campaignID?.lowercasedString ?? ""
    message.subscriberID = record.subscriberID?.lowercasedString ?? ""
    message.status = record.status
    message.attempts = Int32(record.attempts)
    message.provider = record.provider ?? ""
    message.providerMessageID = record.providerMessageID ?? ""
    message.costCents = record.costCents
    message.lastError = record.lastError ?? ""
    message.notBefore = Google_Protobuf_Timestamp(date: record.notBefore)
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    message.updatedAt = Google_Protobuf_Timestamp(date: record.updatedAt)
    message.ambiguous = record.ambiguous
    return message
  }

  static let statuses: Set<String> = [
    "queued", "sending", "sent", "delivered", "bounced", "failed", "suppressed", "expired", "dead", "unknown", "held", "cancelled",
  ]

  package func getMessage(
    request: Herald_Delivery_V1_GetMessageRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_MessageDetail {
    let id = try RPCError.uuid(request.id, field: "id")
    guard let (record, events) = try await store.message(id) else {
      throw RPCError.field("id", .notFound, "no message has id \(request.id)")
    }
    var detail = Herald_Delivery_V1_MessageDetail()
    detail.message = Self.message(record)
    detail.events = events.map(Self.event)
    return detail
  }

  package func listMessages(
    request: Herald_Delivery_V1_ListMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListMessagesResponse {
    guard request.status.isEmpty || Self.statuses.contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "status must be one of \(Self.statuses.sorted().joined(separator: ", "))")
    }
    let campaign = request.campaignID.isEmpty ? nil : try RPCError.uuid(request.campaignID, field: "campaign_id")
    let cursor = request.cursor.isEmpty ? nil : try RPCError.uuid(request.cursor, field: "cursor")
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    let limit = request.limit == 0 ? 100 : Int(request.limit)
    let records = try await store.messages(
      status: request.status.isEmpty ? nil : request.status, campaign: campaign, after: cursor, limit: limit)
    var response = Herald_Delivery_V1_ListMessagesResponse()
    response.messages = records.map(Self.message)
    if records.count == limit, let last = records.last { response.nextCursor = last.id.lowercasedString }
    return response
  }

  package func requeueMessages(
    request: Herald_Delivery_V1_RequeueMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_RequeueMessagesResponse {
    let ids = try request.ids.enumerated().map { index, text in try RPCError.uuid(text, field: "ids[\(index)]") }
    guard !ids.isEmpty || ["dead", "unknown"].contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "give ids, or status dead or unknown to requeue all of them")
    }
    guard request.status.isEmpty || ["dead", "unknown"].contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "only dead or unknown messages can be requeued")
    }
    var response = Herald_Delivery_V1_RequeueMessagesResponse()
    response.requeued = Int64(try await store.requeue(ids: ids, status: request.status.isEmpty ? nil : request.status))
    return response
  }

  static func event(_ event: FeedEvent) -> Herald_Delivery_V1_DeliveryEvent {
    var message = Herald_Delivery_V1_DeliveryEvent()
    message.id = event.id
    message.messageID = event.messageID.lowercasedString
    message.campaignID = event.campaignID?.lowercasedString ?? ""
    message.subscriberID = event.subscriberID?.lowercasedString ?? ""
    message.status = event.status
    message.detail = event.detail
    message.costCents = event.costCents
    message.occurredAt = Google_Protobuf_Timestamp(date: event.occurredAt)
    message.machine = event.engagement.machine
    message.signals = event.engagement.signals
    message.refusedPushToken = event.refusedPushToken ?? ""
    return message
  }
}

/// Campaign holds: a paused campaign's messages held back, a cancelled one's cancelled.
extension DeliveryService {
  package func holdCampaignMessages(
    request: Herald_Delivery_V1_HoldCampaignMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_HoldCampaignMessagesResponse {
    guard let campaign = UUID(uuidString: request.campaignID) else {
      throw RPCError.field("campaign_id", .invalidArgument, "campaign_id '\(request.campaignID)' is not a UUID")
    }
    let reason = String(request.reason.prefix(500))
    let moved: Int
    switch request.action {
    case .hold: moved = try await store.hold(campaign: campaign, .hold, reason: reason)
    case .cancel: moved = try await store.hold(campaign: campaign, .cancel, reason: reason)
    case .release:
      guard let released = try await store.release(campaign: campaign) else {
        throw RPCError.field(
          "action", .failedPrecondition, "campaign \(campaign.lowercasedString) was cancelled: its messages stay cancelled")
      }
      moved = released
    case .unspecified, .UNRECOGNIZED:
      throw RPCError.field("action", .invalidArgument, "action must be CAMPAIGN_HOLD_ACTION_HOLD, _RELEASE or _CANCEL")
    }
    return .with { $0.messages = Int64(moved) }
  }
}
