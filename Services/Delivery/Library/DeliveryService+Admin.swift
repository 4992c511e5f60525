import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Providers, messages and dead letters, provider webhooks, suppressions, spend caps, warm-up.
extension DeliveryService {
  package func listProviders(
    request: Herald_Delivery_V1_ListProvidersRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListProvidersResponse {
    var response = Herald_Delivery_V1_ListProvidersResponse()
    response.providers = providers.all.map { entry in
      var provider = entry.config.redacted
      provider.status = Self.status(entry.breaker.snapshot())
      return provider
    }
    return response
  }

  static func status(_ snapshot: CircuitBreaker.Snapshot) -> Herald_Delivery_V1_ProviderStatus {
    var status = Herald_Delivery_V1_ProviderStatus()
    status.breakerState = snapshot.state.rawValue
    status.errorRate = snapshot.errorRate
    status.attemptsInWindow = Int64(snapshot.attemptsInWindow)
    status.latencyMsAverage = snapshot.averageLatencyMilliseconds
    status.lastError = snapshot.lastError ?? ""
    if let opened = snapshot.openedAt { status.openedAt = Google_Protobuf_Timestamp(date: opened) }
    status.sent = snapshot.sent
    status.failed = snapshot.failed
    return status
  }

  package func putProvider(
    request: Herald_Delivery_V1_Provider, context: ServerContext
  ) async throws -> Herald_Delivery_V1_Provider {
    let config = try ProviderConfig(validating: request)
    try await providers.store.put(config)
    try await providers.refresh()
    return config.redacted
  }

  package func deleteProvider(
    request: Herald_Delivery_V1_DeleteProviderRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_DeleteProviderResponse {
    guard try await providers.store.delete(request.name) else {
      throw RPCError.field("name", .notFound, "no provider is named '\(request.name)'")
    }
    try await providers.refresh()
    return Herald_Delivery_V1_DeleteProviderResponse()
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

  static func uuid(_ text: String, field: String) throws -> UUID {
    try RPCError.uuid(text, field: field)
  }

  static let statuses: Set<String> = [
    "queued", "sending", "sent", "delivered", "bounced", "failed", "suppressed", "expired", "dead", "unknown",
  ]

  package func getMessage(
    request: Herald_Delivery_V1_GetMessageRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_MessageDetail {
    let id = try Self.uuid(request.id, field: "id")
    guard let (record, events) = try await queue.message(id) else {
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
    let campaign = request.campaignID.isEmpty ? nil : try Self.uuid(request.campaignID, field: "campaign_id")
    let cursor = request.cursor.isEmpty ? nil : try Self.uuid(request.cursor, field: "cursor")
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    let limit = request.limit == 0 ? 100 : Int(request.limit)
    let records = try await queue.messages(
      status: request.status.isEmpty ? nil : request.status, campaign: campaign, after: cursor, limit: limit)
    var response = Herald_Delivery_V1_ListMessagesResponse()
    response.messages = records.map(Self.message)
    if records.count == limit, let last = records.last { response.nextCursor = last.id.lowercasedString }
    return response
  }

  package func requeueMessages(
    request: Herald_Delivery_V1_RequeueMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_RequeueMessagesResponse {
    let ids = try request.ids.enumerated().map { index, text in try Self.uuid(text, field: "ids[\(index)]") }
    guard !ids.isEmpty || ["dead", "unknown"].contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "give ids, or status dead or unknown to requeue all of them")
    }
    guard request.status.isEmpty || ["dead", "unknown"].contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "only dead or unknown messages can be requeued")
    }
    var response = Herald_Delivery_V1_RequeueMessagesResponse()
    response.requeued = Int64(try await queue.requeue(ids: ids, status: request.status.isEmpty ? nil : request.status))
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
    return message
  }

  // MARK: - Provider webhooks

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
    let events = try Self.parseWebhook(request.body)
    let (applied, ignored) = try await queue.apply(events, provider: request.provider)
    var response = Herald_Delivery_V1_IngestProviderWebhookResponse()
    response.applied = Int32(applied)
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
        messageID = try uuid(text, field: "\(field).message_id")
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

  // MARK: - Suppressions

  package func listSuppressions(
    request: Herald_Delivery_V1_ListSuppressionsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListSuppressionsResponse {
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    let limit = request.limit == 0 ? 100 : Int(request.limit)
    let rows = try await queue.suppressions(after: request.cursor.isEmpty ? nil : request.cursor, limit: limit)
    var response = Herald_Delivery_V1_ListSuppressionsResponse()
    response.suppressions = rows.map { address, reason, detail, at in
      var suppression = Herald_Delivery_V1_Suppression()
      suppression.address = address
      suppression.reason = reason
      suppression.detail = detail
      suppression.createdAt = Google_Protobuf_Timestamp(date: at)
      return suppression
    }
    if rows.count == limit, let last = rows.last { response.nextCursor = last.0 }
    return response
  }

  package func addSuppression(
    request: Herald_Delivery_V1_Suppression, context: ServerContext
  ) async throws -> Herald_Delivery_V1_Suppression {
    let address = request.address.trimmingCharacters(in: .whitespaces).lowercased()
    guard !address.isEmpty, address.count <= 320 else {
      throw RPCError.field("address", .invalidArgument, "address must be an e-mail address or phone number")
    }
    let reason = request.reason.isEmpty ? "manual" : request.reason
    guard ["hard_bounce", "complaint", "manual"].contains(reason) else {
      throw RPCError.field("reason", .invalidArgument, "reason must be hard_bounce, complaint or manual")
    }
    var suppression = request
    suppression.address = address
    suppression.reason = reason
    suppression.createdAt = Google_Protobuf_Timestamp(
      date: try await queue.addSuppression(address: address, reason: reason, detail: request.detail))
    return suppression
  }

  package func removeSuppression(
    request: Herald_Delivery_V1_RemoveSuppressionRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_RemoveSuppressionResponse {
    var response = Herald_Delivery_V1_RemoveSuppressionResponse()
    response.removed = try await queue.removeSuppression(address: request.address.trimmingCharacters(in: .whitespaces).lowercased())
    return response
  }

  // MARK: - Spend caps and warm-up

  package func getSpendCap(
    request: Herald_Delivery_V1_GetSpendCapRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_SpendCap {
    let campaign = try Self.uuid(request.campaignID, field: "campaign_id")
    guard let (budget, spent) = try await queue.spendCap(campaign) else {
      throw RPCError.field("campaign_id", .notFound, "campaign \(request.campaignID) has no spend cap")
    }
    var cap = Herald_Delivery_V1_SpendCap()
    cap.campaignID = campaign.lowercasedString
    cap.budgetCents = budget
    cap.spentCents = spent
    return cap
  }

  package func putWarmupSchedule(
    request: Herald_Delivery_V1_WarmupSchedule, context: ServerContext
  ) async throws -> Herald_Delivery_V1_WarmupSchedule {
    let schedule = try WarmupScheduleConfig(validating: request)
    try await providers.store.putSchedule(schedule)
    return try await listWarmupSchedules(request: .init(), context: context).schedules
      .first { $0.sendingIdentity == schedule.sendingIdentity } ?? request
  }

  package func listWarmupSchedules(
    request: Herald_Delivery_V1_ListWarmupSchedulesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListWarmupSchedulesResponse {
    var response = Herald_Delivery_V1_ListWarmupSchedulesResponse()
    response.schedules = try await queue.warmupSchedules().map { row in
      var schedule = Herald_Delivery_V1_WarmupSchedule()
      schedule.sendingIdentity = row.identity
      schedule.dailyCaps = row.caps
      if let started = row.startedOn { schedule.startedOn = Google_Protobuf_Timestamp(date: started) }
      schedule.today = Int32(row.today)
      schedule.sentToday = row.sentToday
      return schedule
    }
    return response
  }
}
