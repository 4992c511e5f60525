import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Analytics (SPEC §2): per campaign and variant counts, daily rollups and engagement, as the
/// delivery feed (`DeliveryFeedConsumer`) has taken them in.
extension CampaignService {
  package func getCampaignAnalytics(
    request: Herald_Campaign_V1_GetCampaignAnalyticsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_CampaignAnalytics {
    let id = try Self.uuid(request.campaignID, field: "campaign_id")
    let campaign = try await store.campaign(id: id, field: "campaign_id")
    var totals = ResultCounters()
    var variants: [String: ResultCounters] = [:]
    var days: [String: ResultCounters] = [:]
    for stat in try await store.dailyStats(of: id) {
      totals.add(stat)
      variants[stat.variant, default: .init()].add(stat)
      days[stat.day, default: .init()].add(stat)
    }
    totals.audience = campaign.audience
    totals.recipients = campaign.variants.reduce(0) { $0 + $1.recipients }
    var analytics = Herald_Campaign_V1_CampaignAnalytics()
    analytics.campaignID = id.lowercasedString
    analytics.totals = Self.counts(totals)
    analytics.recipients = totals.recipients
    analytics.rates = Self.rates(totals)
    analytics.currency = results.currency
    // Every variant of the campaign appears, in its order, even before any event.
    let known = campaign.variants.map(\.name)
    analytics.variants = (known + variants.keys.filter { !known.contains($0) }.sorted()).map { name in
      var counters = variants[name] ?? .init()
      counters.recipients = campaign.variants.first { $0.name == name }?.recipients ?? 0
      return .with {
        $0.variant = name
        $0.counts = Self.counts(counters)
        $0.recipients = counters.recipients
        $0.rates = Self.rates(counters)
      }
    }
    analytics.days = days.sorted { $0.key < $1.key }.map { day, counters in
      .with {
        $0.day = day
        $0.counts = Self.counts(counters)
      }
    }
    analytics.skippedNoConsent = campaign.skippedAtExpansion + (campaign.outbox["skipped"] ?? 0)
    if let updated = try await store.feedUpdatedAt() {
      analytics.updatedAt = Google_Protobuf_Timestamp(date: updated)
    }
    return analytics
  }

  static func counts(_ counters: ResultCounters) -> Herald_Campaign_V1_DeliveryCounts {
    var counts = Herald_Campaign_V1_DeliveryCounts()
    counts.queued = counters.queued
    counts.sent = counters.sent
    counts.delivered = counters.delivered
    counts.bounced = counters.bounced
    counts.softBounced = counters.softBounced
    counts.failed = counters.failed
    counts.opened = counters.opened
    counts.uniqueOpened = counters.uniqueOpened
    counts.clicked = counters.clicked
    counts.uniqueClicked = counters.uniqueClicked
    counts.replied = counters.replied
    counts.unsubscribed = counters.unsubscribed
    counts.complained = counters.complained
    counts.costCents = counters.costCents
    counts.conversions = counters.conversions
    counts.revenueCents = counters.revenueCents
    counts.machineOpened = counters.machineOpened
    counts.machineClicked = counters.machineClicked
    return counts
  }

  package func listEngagement(
    request: Herald_Campaign_V1_ListEngagementRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListEngagementResponse {
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 50)")
    }
    guard (0...100).contains(request.minScore) else {
      throw RPCError.field("min_score", .invalidArgument, "min_score must be from 0 to 100")
    }
    let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
    // The token is the last row's (score, subscriber id).
    var afterScore = 101
    var afterID = CampaignStore.firstID
    if !request.pageToken.isEmpty {
      let parts = String(decoding: Data(base64Encoded: request.pageToken) ?? Data(), as: UTF8.self).split(separator: "/")
      guard parts.count == 2, let score = Int(parts[0]), let id = UUID(text: String(parts[1])) else {
        throw RPCError.field("page_token", .invalidArgument, "page_token is not one this service gave out")
      }
      (afterScore, afterID) = (score, id)
    }
    var response = Herald_Campaign_V1_ListEngagementResponse()
    response.subscribers = try await store.engagement(
      minScore: Int(request.minScore), after: (afterScore, afterID), limit: limit + 1
    ).map(Self.message)
    if response.subscribers.count > limit {
      response.subscribers.removeLast()
      let last = response.subscribers[limit - 1]
      response.nextPageToken = Data("\(last.score)/\(last.subscriberID)".utf8).base64EncodedString()
    }
    return response
  }

  static func message(_ record: EngagementRecord) -> Herald_Campaign_V1_SubscriberEngagement {
    var item = Herald_Campaign_V1_SubscriberEngagement()
    item.subscriberID = record.subscriberID.lowercasedString
    item.score = Int32(record.score)
    item.delivered = record.delivered
    item.opened = record.opened
    item.clicked = record.clicked
    item.bounced = record.bounced
    item.complained = record.complained
    if let engagedAt = record.lastEngagedAt { item.lastEngagedAt = Google_Protobuf_Timestamp(date: engagedAt) }
    if let eventAt = record.lastEventAt { item.lastMessagedAt = Google_Protobuf_Timestamp(date: eventAt) }
    return item
  }
}
