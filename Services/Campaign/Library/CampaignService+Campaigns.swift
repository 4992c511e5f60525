import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Campaigns and their status machine (SPEC §2): the transitions are the store's, the checks of
/// the request are here.
extension CampaignService {
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
      variants = [
        VariantRecord(name: "default", templateID: try Self.uuid(request.templateID, field: "template_id"), weight: 1, recipients: 0)
      ]
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
    // The pixel and the redirects live in HTML e-mail.
    if request.channel != "email", request.tracking.opens || request.tracking.clicks {
      let field = request.tracking.opens ? "tracking.opens" : "tracking.clicks"
      throw RPCError.field(field, .invalidArgument, "\(field) is for e-mail campaigns; this one is \(request.channel)")
    }
    var quietHours: String?
    if request.hasQuietHours {
      guard request.channel == "sms" else {
        throw RPCError.field("quiet_hours", .invalidArgument, "quiet_hours is for SMS campaigns; this one is \(request.channel)")
      }
      // The same grammar delivery applies the window with.
      for (name, text, end) in [("start", request.quietHours.start, false), ("end", request.quietHours.end, true)]
      where QuietWindow.minutes(text, end: end) == nil {
        throw RPCError.field(
          "quiet_hours.\(name)", .invalidArgument,
          "quiet_hours.\(name) '\(text)' must be a time of day as HH:MM (00:00 to 23:59\(end ? ", or 24:00" : ""))")
      }
      quietHours = "\(request.quietHours.start)-\(request.quietHours.end)"
    }
    let abTest = request.hasAbTest ? try Self.abTest(request, variants: variants) : nil
    let created = try await store.createCampaign(
      NewCampaign(
        name: name, channel: request.channel, listID: list, segmentID: segment, variants: variants,
        budgetCents: request.hasBudgetCents ? request.budgetCents : nil, trackOpens: request.tracking.opens,
        trackClicks: request.tracking.clicks, quietHours: quietHours, abTest: abTest))
    return Self.message(created)
  }

  /// A checked A/B test: at least two variants, and open or click only where they are tracked.
  static func abTest(_ request: Herald_Campaign_V1_CreateCampaignRequest, variants: [VariantRecord]) throws -> ABTestSettings {
    let test = request.abTest
    guard variants.count >= 2 else {
      throw RPCError.field("ab_test", .invalidArgument, "ab_test needs at least two variants; this campaign has \(variants.count)")
    }
    guard (1...90).contains(test.testPercent) else {
      throw RPCError.field("ab_test.test_percent", .invalidArgument, "ab_test.test_percent must be from 1 to 90 (got \(test.testPercent))")
    }
    guard (1...43_200).contains(test.waitMinutes) else {
      throw RPCError.field(
        "ab_test.wait_minutes", .invalidArgument, "ab_test.wait_minutes must be from 1 to 43,200 (30 days; got \(test.waitMinutes))")
    }
    guard ABTestSettings.metrics.contains(test.metric) else {
      throw RPCError.field(
        "ab_test.metric", .invalidArgument,
        "ab_test.metric '\(test.metric)' must be one of \(ABTestSettings.metrics.joined(separator: ", "))")
    }
    if test.metric == "open", !request.tracking.opens {
      throw RPCError.field("ab_test.metric", .invalidArgument, "ab_test.metric open needs tracking.opens (an e-mail campaign's open pixel)")
    }
    if test.metric == "click", !request.tracking.clicks {
      throw RPCError.field(
        "ab_test.metric", .invalidArgument, "ab_test.metric click needs tracking.clicks (an e-mail campaign's click redirects)")
    }
    let fallback = test.fallback.isEmpty ? "control" : test.fallback
    guard ABTestSettings.fallbacks.contains(fallback) else {
      throw RPCError.field("ab_test.fallback", .invalidArgument, "ab_test.fallback '\(test.fallback)' must be control or split")
    }
    let confidence = test.hasConfidencePercent ? test.confidencePercent : 95
    guard (80...99).contains(confidence) else {
      throw RPCError.field(
        "ab_test.confidence_percent", .invalidArgument, "ab_test.confidence_percent must be from 80 to 99 (got \(confidence))")
    }
    return ABTestSettings(
      testBasisPoints: Int(test.testPercent) * 100, waitSeconds: Int(test.waitMinutes) * 60, metric: test.metric,
      confidenceBasisPoints: Int(confidence) * 100, fallback: fallback)
  }

  package func getCampaign(request: Herald_Campaign_V1_GetCampaignRequest, context: ServerContext) async throws
    -> Herald_Campaign_V1_Campaign
  {
    Self.message(try await store.campaign(id: try Self.uuid(request.id, field: "id")))
  }

  package func listCampaigns(
    request: Herald_Campaign_V1_ListCampaignsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListCampaignsResponse {
    let statuses = CampaignRecord.statuses
    guard request.status.isEmpty || statuses.contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "status '\(request.status)' must be one of \(statuses.joined(separator: ", "))")
    }
    var response = Herald_Campaign_V1_ListCampaignsResponse()
    response.campaigns = try await store.campaigns(status: request.status.isEmpty ? nil : request.status).map(Self.message)
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
    return Self.message(try await store.scheduleCampaign(id, at: sendAt))
  }

  package func sendCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(request.id, field: "id")
    // Delivery is asked only for the channels that need a provider to be sent at all.
    var served: Set<String>?
    if let providers, try await store.campaignChannel(id).map(CampaignStore.providerCheckedChannels.contains) == true {
      served = try await providers.channelsWithProviders()
    }
    return Self.message(try await store.sendCampaign(id, canSignLinks: links.canSign, served: served))
  }

  package func pauseCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    Self.message(try await store.pauseCampaign(try Self.uuid(request.id, field: "id")))
  }

  package func resumeCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    Self.message(try await store.resumeCampaign(try Self.uuid(request.id, field: "id")))
  }

  package func cancelCampaign(
    request: Herald_Campaign_V1_CampaignTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    Self.message(try await store.cancelCampaign(try Self.uuid(request.id, field: "id")))
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
    message.tracking = .with {
      $0.opens = record.trackOpens
      $0.clicks = record.trackClicks
    }
    if let window = record.quietHours.flatMap(QuietWindow.parts(of:)) {
      message.quietHours = .with {
        $0.start = window.start
        $0.end = window.end
      }
    }
    if let test = record.abTest { message.abTest = Self.message(test) }
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
