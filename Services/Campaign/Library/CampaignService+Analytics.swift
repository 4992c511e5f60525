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
    let campaign: CampaignRecord
    do {
      campaign = try await store.campaign(id: id)
    } catch let error as RPCError where error.code == .notFound {
      throw CampaignStore.notFound("campaign", id, field: "campaign_id")
    }
    var totals = Herald_Campaign_V1_DeliveryCounts()
    var variants: [String: Herald_Campaign_V1_DeliveryCounts] = [:]
    var days: [String: Herald_Campaign_V1_DeliveryCounts] = [:]
    for stat in try await store.dailyStats(of: id) {
      Self.add(stat.status, stat.events, stat.costCents, to: &totals)
      Self.add(stat.status, stat.events, stat.costCents, to: &variants[stat.variant, default: .init()])
      Self.add(stat.status, stat.events, stat.costCents, to: &days[stat.day, default: .init()])
    }
    var analytics = Herald_Campaign_V1_CampaignAnalytics()
    analytics.campaignID = id.lowercasedString
    analytics.totals = totals
    // Every variant of the campaign appears, in its order, even before any event.
    let known = campaign.variants.map(\.name)
    analytics.variants = (known + variants.keys.filter { !known.contains($0) }.sorted()).map { name in
      .with {
        $0.variant = name
        $0.counts = variants[name] ?? .init()
      }
    }
    analytics.days = days.sorted { $0.key < $1.key }.map { day, counts in
      .with {
        $0.day = day
        $0.counts = counts
      }
    }
    analytics.skippedNoConsent = campaign.skippedAtExpansion + (campaign.outbox["skipped"] ?? 0)
    if let updated = try await store.feedUpdatedAt() {
      analytics.updatedAt = Google_Protobuf_Timestamp(date: updated)
    }
    return analytics
  }

  static func add(_ status: String, _ events: Int64, _ cost: Int64, to counts: inout Herald_Campaign_V1_DeliveryCounts) {
    switch status {
    case "queued": counts.queued += events
    case "sent": counts.sent += events
    case "delivered": counts.delivered += events
    case "bounced": counts.bounced += events
    case "soft_bounced": counts.softBounced += events
    case "replied": counts.replied += events
    case "failed": counts.failed += events
    case "opened": counts.opened += events
    case "clicked": counts.clicked += events
    case "machine_opened": counts.machineOpened += events
    case "machine_clicked": counts.machineClicked += events
    case "unsubscribed": counts.unsubscribed += events
    case "complained": counts.complained += events
    default: break
    }
    counts.costCents += cost
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
