import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Auto-response rules (SPEC §11): created checked (the error names the field), listed in the
/// order they are tried, turned on and off, deleted, and tried on a text without sending
/// anything. The answers themselves are given by `InboundFeedConsumer`.
extension CampaignService {
  package func createAutoResponseRule(
    request: Herald_Campaign_V1_AutoResponseRule, context: ServerContext
  ) async throws -> Herald_Campaign_V1_AutoResponseRule {
    let campaign = request.campaignID.isEmpty ? nil : try RPCError.uuid(request.campaignID, field: "campaign_id")
    let rule: AutoResponseRule
    do {
      rule = try AutoResponseRule(
        name: request.name, channel: request.channel, trigger: request.trigger, pattern: request.pattern, campaignID: campaign,
        subject: request.subject, body: request.body,
        variables: request.variables.map { TemplateVariable(name: $0.name, defaultValue: $0.hasDefaultValue ? $0.defaultValue : nil) },
        delaySeconds: Int(request.delaySeconds), cooldownSeconds: Int(request.cooldownSeconds), dailyCap: Int(request.dailyCap),
        priority: Int(request.priority))
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    do {
      guard let created = try await store.createRule(rule) else {
        throw RPCError.field("campaign_id", .notFound, "no campaign has id \(campaign?.lowercasedString ?? "")")
      }
      return created.message
    } catch CampaignStoreError.duplicate {
      throw RPCError.field("name", .alreadyExists, "an auto-response rule is already named '\(rule.name)'")
    }
  }

  package func listAutoResponseRules(
    request: Herald_Campaign_V1_ListAutoResponseRulesRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListAutoResponseRulesResponse {
    var response = Herald_Campaign_V1_ListAutoResponseRulesResponse()
    response.rules = try await store.rules().map(\.message)
    return response
  }

  package func setAutoResponseRuleEnabled(
    request: Herald_Campaign_V1_SetAutoResponseRuleEnabledRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_AutoResponseRule {
    let id = try Self.uuid(request.id, field: "id")
    guard let rule = try await store.setRuleEnabled(id, request.enabled) else {
      throw RPCError.field("id", .notFound, "no auto-response rule has id \(id.lowercasedString)")
    }
    return rule.message
  }

  package func deleteAutoResponseRule(
    request: Herald_Campaign_V1_DeleteAutoResponseRuleRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_DeleteAutoResponseRuleResponse {
    var response = Herald_Campaign_V1_DeleteAutoResponseRuleResponse()
    response.deleted = try await store.deleteRule(try Self.uuid(request.id, field: "id"))
    return response
  }

  package func previewAutoResponse(
    request: Herald_Campaign_V1_PreviewAutoResponseRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_AutoResponsePreview {
    guard ["sms", "email"].contains(request.channel) else {
      throw RPCError.field("channel", .invalidArgument, "channel must be sms or email")
    }
    let campaign = request.campaignID.isEmpty ? nil : try RPCError.uuid(request.campaignID, field: "campaign_id")
    var subscriber: SubscriberRecord?
    if !request.subscriberID.isEmpty {
      let id = try RPCError.uuid(request.subscriberID, field: "subscriber_id")
      guard let found = try await store.subscriber(id: id) else { throw Self.notFound(id) }
      subscriber = found
    }
    var preview = Herald_Campaign_V1_AutoResponsePreview()
    guard
      let rule = try await store.rules(enabledOnly: true).first(where: {
        $0.matches(channel: request.channel, text: request.text, campaign: campaign)
      })
    else { return preview }
    var campaignName = ""
    if let campaign { campaignName = try await store.campaign(id: campaign).name }
    do throws(SubscriberValidation.Invalid) {
      let answer = try rule.render(subscriber: subscriber, text: request.text, subject: "", campaignName: campaignName)
      preview.subject = answer.subject
      preview.body = answer.body
    } catch {
      // The stored rule cannot answer (a variable without value or default): not the request's fault.
      throw RPCError.field(error.field, .failedPrecondition, "rule \(rule.name) cannot answer: \(error.message)")
    }
    preview.answered = true
    preview.ruleID = rule.id.lowercasedString
    preview.ruleName = rule.name
    return preview
  }

  package func listAutoResponses(
    request: Herald_Campaign_V1_ListAutoResponsesRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListAutoResponsesResponse {
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    var response = Herald_Campaign_V1_ListAutoResponsesResponse()
    response.responses = try await store.autoResponses(limit: request.limit == 0 ? 100 : Int(request.limit)).map { record in
      var item = Herald_Campaign_V1_AutoResponse()
      item.id = record.id.lowercasedString
      item.ruleID = record.ruleID.lowercasedString
      item.inboundID = record.inboundID.lowercasedString
      item.subscriberID = record.subscriberID?.lowercasedString ?? ""
      item.recipient = record.recipient
      item.status = record.status
      item.detail = record.detail
      item.messageID = record.messageID?.lowercasedString ?? ""
      item.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
      return item
    }
    return response
  }
}
