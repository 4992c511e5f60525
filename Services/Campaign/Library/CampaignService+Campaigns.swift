import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import PostgresNIO
import SwiftProtobuf

/// Lists, segments, templates and campaigns (SPEC §2).
extension CampaignService {
  static func uuid(_ text: String, field: String) throws -> UUID {
    guard !text.isEmpty else { throw RPCError.field(field, .invalidArgument, "\(field) is required") }
    return try RPCError.uuid(text, field: field)
  }

  static func name(_ text: String) throws -> String {
    let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !name.isEmpty, name.count <= 200 else { throw RPCError.field("name", .invalidArgument, "name must be 1 to 200 characters") }
    return name
  }

  static func invalid(_ error: SubscriberValidation.Invalid) -> RPCError {
    RPCError.field(error.field, .invalidArgument, error.message)
  }

  // MARK: Lists

  package func createList(
    request: Herald_Campaign_V1_CreateListRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_SubscriberList {
    let description = request.description_p.trimmingCharacters(in: .whitespacesAndNewlines)
    guard description.count <= 2000 else {
      throw RPCError.field("description", .invalidArgument, "description is longer than 2,000 characters")
    }
    return Self.message(try await campaigns.createList(name: try Self.name(request.name), description: description))
  }

  package func getList(request: Herald_Campaign_V1_GetListRequest, context: ServerContext) async throws -> Herald_Campaign_V1_SubscriberList {
    Self.message(try await campaigns.list(id: try Self.uuid(request.id, field: "id")))
  }

  package func listLists(
    request: Herald_Campaign_V1_ListListsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListListsResponse {
    var response = Herald_Campaign_V1_ListListsResponse()
    response.lists = try await campaigns.lists().map(Self.message)
    return response
  }

  package func addListMembers(
    request: Herald_Campaign_V1_ListMembersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListMembersResponse {
    try await changeMembers(request, add: true)
  }

  package func removeListMembers(
    request: Herald_Campaign_V1_ListMembersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListMembersResponse {
    try await changeMembers(request, add: false)
  }

  private func changeMembers(_ request: Herald_Campaign_V1_ListMembersRequest, add: Bool) async throws -> Herald_Campaign_V1_ListMembersResponse {
    let list = try Self.uuid(request.listID, field: "list_id")
    guard !request.subscriberIds.isEmpty else { throw RPCError.field("subscriber_ids", .invalidArgument, "subscriber_ids is empty") }
    guard request.subscriberIds.count <= CampaignStore.maxMembersPerCall else {
      throw RPCError.field(
        "subscriber_ids", .invalidArgument,
        "subscriber_ids holds \(request.subscriberIds.count); at most \(CampaignStore.maxMembersPerCall) per call")
    }
    let ids = try request.subscriberIds.enumerated().map { index, text in try Self.uuid(text, field: "subscriber_ids[\(index)]") }
    var response = Herald_Campaign_V1_ListMembersResponse()
    response.changed = Int32(try await campaigns.changeMembers(listID: list, subscriberIDs: ids, add: add))
    response.list = Self.message(try await campaigns.list(id: list, field: "list_id"))
    return response
  }

  // MARK: Segments

  package func createSegment(
    request: Herald_Campaign_V1_CreateSegmentRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Segment {
    let conditions = try request.conditions.map { condition in
      SegmentCondition(field: condition.field, op: condition.op, valueJSON: condition.hasValue ? try condition.value.jsonString() : "")
    }
    return Self.message(
      try await campaigns.createSegment(
        name: try Self.name(request.name), match: request.match.isEmpty ? "all" : request.match, conditions: conditions))
  }

  package func getSegment(request: Herald_Campaign_V1_GetSegmentRequest, context: ServerContext) async throws -> Herald_Campaign_V1_Segment {
    let id = try Self.uuid(request.id, field: "id")
    guard let segment = try await campaigns.segments(id: id).first else { throw CampaignStore.notFound("segment", id) }
    return Self.message(segment)
  }

  package func listSegments(
    request: Herald_Campaign_V1_ListSegmentsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListSegmentsResponse {
    var response = Herald_Campaign_V1_ListSegmentsResponse()
    response.segments = try await campaigns.segments().map(Self.message)
    return response
  }

  // MARK: Templates

  package func createTemplate(
    request: Herald_Campaign_V1_CreateTemplateRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Template {
    let name = try Self.name(request.name)
    let template: MessageTemplate
    do {
      template = try MessageTemplate(
        channel: request.channel, format: request.format, subject: request.subject, body: request.body,
        variables: request.variables.map { TemplateVariable(name: $0.name, defaultValue: $0.hasDefaultValue ? $0.defaultValue : nil) })
    } catch {
      throw Self.invalid(error)
    }
    return Self.message(try await campaigns.createTemplate(name: name, template: template))
  }

  package func getTemplate(request: Herald_Campaign_V1_GetTemplateRequest, context: ServerContext) async throws -> Herald_Campaign_V1_Template {
    Self.message(try await campaigns.template(id: try Self.uuid(request.id, field: "id"), field: "id"))
  }

  package func listTemplates(
    request: Herald_Campaign_V1_ListTemplatesRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListTemplatesResponse {
    var response = Herald_Campaign_V1_ListTemplatesResponse()
    response.templates = try await campaigns.templates().map(Self.message)
    return response
  }

  package func previewTemplate(
    request: Herald_Campaign_V1_PreviewTemplateRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_TemplatePreview {
    let record = try await campaigns.template(id: try Self.uuid(request.templateID, field: "template_id"))
    var values: [String: String] = [:]
    if !request.subscriberID.isEmpty {
      let id = try Self.uuid(request.subscriberID, field: "subscriber_id")
      guard let subscriber = try await store.get(id: id) else {
        throw RPCError.field("subscriber_id", .notFound, "no subscriber has id \(id.lowercasedString)")
      }
      values = MessageTemplate.values(of: subscriber)
    }
    for (key, value) in request.variables.fields {
      switch value.kind {
      case .stringValue(let text): values[key] = text
      case .boolValue(let flag): values[key] = flag ? "true" : "false"
      case .numberValue(let number):
        values[key] = number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
      default:
        throw RPCError.field("variables.\(key)", .invalidArgument, "variables.\(key) must be a string, number or boolean")
      }
    }
    let rendered: (subject: String, body: String)
    do {
      rendered = try record.template.render(values)
    } catch {
      throw Self.invalid(error)
    }
    var preview = Herald_Campaign_V1_TemplatePreview()
    preview.subject = rendered.subject
    preview.body = rendered.body
    if record.template.channel == "sms" { preview.smsLength = Self.message(SMSLength.measure(rendered.body)) }
    return preview
  }

  // MARK: Campaigns

  package func createCampaign(
    request: Herald_Campaign_V1_CreateCampaignRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let name = try Self.name(request.name)
    guard MessageTemplate.channels.contains(request.channel) else {
      throw RPCError.field("channel", .invalidArgument, "channel '\(request.channel)' must be one of email, sms, push, whatsapp")
    }
    guard request.listID.isEmpty != request.segmentID.isEmpty else {
      throw RPCError.field("list_id", .invalidArgument, "give exactly one audience: list_id or segment_id")
    }
    let list = request.listID.isEmpty ? nil : try Self.uuid(request.listID, field: "list_id")
    let segment = request.segmentID.isEmpty ? nil : try Self.uuid(request.segmentID, field: "segment_id")
    var variants: [VariantRecord] = []
    if !request.templateID.isEmpty {
      guard request.variants.isEmpty else {
        throw RPCError.field("variants", .invalidArgument, "give template_id or variants, not both")
      }
      variants = [VariantRecord(name: "default", templateID: try Self.uuid(request.templateID, field: "template_id"), weight: 1, recipients: 0)]
    } else {
      guard !request.variants.isEmpty else {
        throw RPCError.field("template_id", .invalidArgument, "give template_id or at least one of variants")
      }
      guard request.variants.count <= 26 else {
        throw RPCError.field("variants", .invalidArgument, "variants holds \(request.variants.count); at most 26")
      }
      var names = Set<String>()
      for (index, variant) in request.variants.enumerated() {
        let name = variant.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 50 else {
          throw RPCError.field("variants[\(index)].name", .invalidArgument, "variants[\(index)].name must be 1 to 50 characters")
        }
        guard names.insert(name).inserted else {
          throw RPCError.field("variants[\(index)].name", .invalidArgument, "variant name '\(name)' is used twice")
        }
        guard (1...10_000).contains(variant.weight) else {
          throw RPCError.field("variants[\(index)].weight", .invalidArgument, "variants[\(index)].weight must be from 1 to 10,000")
        }
        variants.append(
          VariantRecord(
            name: name, templateID: try Self.uuid(variant.templateID, field: "variants[\(index)].template_id"),
            weight: Int(variant.weight), recipients: 0))
      }
    }
    if request.hasBudgetCents, request.budgetCents < 0 {
      throw RPCError.field("budget_cents", .invalidArgument, "budget_cents must not be negative")
    }
    let created = try await campaigns.createCampaign(
      NewCampaign(
        name: name, channel: request.channel, listID: list, segmentID: segment, variants: variants,
        budgetCents: request.hasBudgetCents ? request.budgetCents : nil))
    return Self.message(created)
  }

  package func getCampaign(request: Herald_Campaign_V1_GetCampaignRequest, context: ServerContext) async throws -> Herald_Campaign_V1_Campaign {
    Self.message(try await campaigns.campaign(id: try Self.uuid(request.id, field: "id")))
  }

  static let statuses = ["draft", "scheduled", "sending", "sent", "paused", "cancelled", "failed"]

  package func listCampaigns(
    request: Herald_Campaign_V1_ListCampaignsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListCampaignsResponse {
    guard request.status.isEmpty || Self.statuses.contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "status '\(request.status)' must be one of \(Self.statuses.joined(separator: ", "))")
    }
    var response = Herald_Campaign_V1_ListCampaignsResponse()
    response.campaigns = try await campaigns.campaigns(status: request.status.isEmpty ? nil : request.status).map(Self.message)
    return response
  }

  package func scheduleCampaign(
    request: Herald_Campaign_V1_ScheduleCampaignRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(request.id, field: "id")
    guard request.hasSendAt else { throw RPCError.field("send_at", .invalidArgument, "send_at is required") }
    let sendAt = request.sendAt.date
    guard sendAt > Date() else { throw RPCError.field("send_at", .invalidArgument, "send_at must be in the future; use send to start now") }
    guard sendAt < Date().addingTimeInterval(366 * 86_400) else {
      throw RPCError.field("send_at", .invalidArgument, "send_at must be within a year")
    }
    let logger = campaigns.logger
    return Self.message(
      try await campaigns.transition(id, action: "schedule", from: ["draft"]) { connection, _ in
        try await connection.query(
          "UPDATE campaign.campaigns SET status = 'scheduled', send_at = \(sendAt), updated_at = now() WHERE id = \(id)",
          logger: logger)
      })
  }

  package func sendCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(request.id, field: "id")
    let logger = campaigns.logger
    return Self.message(
      try await campaigns.transition(id, action: "send", from: ["draft", "scheduled"]) { connection, campaign in
        guard CampaignStore.deliverableChannels.contains(campaign.channel) else {
          throw RPCError.field("channel", .failedPrecondition, "no provider for channel \(campaign.channel)")
        }
        try await CampaignStore.start(campaign, on: connection, logger: logger)
      })
  }

  package func pauseCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    try await simpleTransition(request.id, action: "pause", from: ["sending"], to: "paused")
  }

  package func resumeCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    try await simpleTransition(request.id, action: "resume", from: ["paused"], to: "sending")
  }

  package func cancelCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(request.id, field: "id")
    let logger = campaigns.logger
    return Self.message(
      try await campaigns.transition(id, action: "cancel", from: ["draft", "scheduled", "sending", "paused"]) { connection, _ in
        // Waits for a batch the relay holds, so nothing it has not relayed is sent afterwards.
        try await connection.query(
          "UPDATE campaign.outbox_chunks SET status = 'cancelled' WHERE campaign_id = \(id) AND status = 'pending'", logger: logger)
        try await CampaignStore.setStatus(id, to: "cancelled", on: connection, logger: logger)
      })
  }

  private func simpleTransition(_ text: String, action: String, from: [String], to status: String) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(text, field: "id")
    let logger = campaigns.logger
    return Self.message(
      try await campaigns.transition(id, action: action, from: from) { connection, _ in
        try await CampaignStore.setStatus(id, to: status, on: connection, logger: logger)
      })
  }

  // MARK: Messages

  static func message(_ counts: AudienceCounts) -> Herald_Campaign_V1_ListCounts {
    var message = Herald_Campaign_V1_ListCounts()
    message.subscribers = counts.subscribers
    message.emailSubscribed = counts.emailSubscribed
    message.smsSubscribed = counts.smsSubscribed
    return message
  }

  static func message(_ list: ListRecord) -> Herald_Campaign_V1_SubscriberList {
    var message = Herald_Campaign_V1_SubscriberList()
    message.id = list.id.lowercasedString
    message.name = list.name
    message.description_p = list.description
    message.counts = Self.message(list.counts)
    message.createdAt = Google_Protobuf_Timestamp(date: list.createdAt)
    return message
  }

  static func message(_ segment: SegmentRecord) -> Herald_Campaign_V1_Segment {
    var message = Herald_Campaign_V1_Segment()
    message.id = segment.id.lowercasedString
    message.name = segment.name
    message.match = segment.match
    message.conditions = segment.conditions.map { condition in
      var item = Herald_Campaign_V1_SegmentCondition()
      item.field = condition.field
      item.op = condition.op
      if !condition.valueJSON.isEmpty, let value = try? Google_Protobuf_Value(jsonString: condition.valueJSON) { item.value = value }
      return item
    }
    message.counts = Self.message(segment.counts)
    message.createdAt = Google_Protobuf_Timestamp(date: segment.createdAt)
    return message
  }

  static func message(_ measure: SMSLength.Measure) -> Herald_Campaign_V1_SmsLength {
    var message = Herald_Campaign_V1_SmsLength()
    message.encoding = measure.encoding
    message.units = Int32(measure.units)
    message.segments = Int32(measure.segments)
    return message
  }

  static func message(_ record: TemplateRecord) -> Herald_Campaign_V1_Template {
    var message = Herald_Campaign_V1_Template()
    message.id = record.id.lowercasedString
    message.name = record.name
    message.channel = record.template.channel
    message.subject = record.template.subject
    message.body = record.template.body
    message.format = record.template.format
    message.variables = record.template.variables.map { variable in
      var item = Herald_Campaign_V1_TemplateVariable()
      item.name = variable.name
      if let value = variable.defaultValue { item.defaultValue = value }
      return item
    }
    if record.template.channel == "sms" { message.smsLength = Self.message(SMSLength.measure(record.template.body)) }
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    return message
  }

  static func message(_ record: CampaignRecord) -> Herald_Campaign_V1_Campaign {
    var message = Herald_Campaign_V1_Campaign()
    message.id = record.id.lowercasedString
    message.name = record.name
    message.channel = record.channel
    message.listID = record.listID?.lowercasedString ?? ""
    message.segmentID = record.segmentID?.lowercasedString ?? ""
    message.variants = record.variants.map { variant in
      var item = Herald_Campaign_V1_CampaignVariant()
      item.name = variant.name
      item.templateID = variant.templateID.lowercasedString
      item.weight = Int32(variant.weight)
      item.recipients = variant.recipients
      return item
    }
    if let budget = record.budgetCents { message.budgetCents = budget }
    message.status = record.status
    message.statusReason = record.statusReason
    if let date = record.sendAt { message.sendAt = Google_Protobuf_Timestamp(date: date) }
    var counts = Herald_Campaign_V1_CampaignCounts()
    counts.audience = record.audience
    counts.outbox = record.outbox.values.reduce(0, +)
    counts.relayed = record.outbox["relayed"] ?? 0
    counts.skippedNoConsent = record.skippedAtExpansion + (record.outbox["skipped"] ?? 0)
    counts.failed = record.outbox["failed"] ?? 0
    counts.cancelled = record.outbox["cancelled"] ?? 0
    message.counts = counts
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    if let date = record.startedAt { message.startedAt = Google_Protobuf_Timestamp(date: date) }
    if let date = record.finishedAt { message.finishedAt = Google_Protobuf_Timestamp(date: date) }
    return message
  }
}
