import Foundation
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import SwiftProtobuf

/// Where delivery events come from: the delivery service's `ListDeliveryEvents`.
package protocol DeliveryEventSource: Sendable {
  func events(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse
}

/// Takes in delivery events (SPEC §2 analytics): per campaign, variant and day counts and cost,
/// and each subscriber's engagement. The cursor is kept in `campaign.delivery_feed` and moved in
/// the same transaction as the counts, under that row's lock, so every event is counted exactly
/// once however many replicas run this. The campaigns a batch touched are then judged by the
/// deliverability guard (complaint and bounce rates), in the same transaction. Metrics:
/// `herald_campaign_delivery_events_applied_total` (events taken in by committed batches) and
/// `herald_campaign_guard_paused_total` (campaigns the guard paused).
package struct DeliveryFeedConsumer: Sendable {
  package static let countedStatuses = [
    "queued", "sent", "delivered", "bounced", "soft_bounced", "failed", "opened", "clicked", "unsubscribed", "complained",
    "replied",
  ]
  let store: CampaignStore
  let source: any DeliveryEventSource
  let logger: Logger
  var batchSize: Int32 = 1000
  let deliverabilityGuard: DeliverabilityGuard

  package init(
    client: PostgresClient, source: any DeliveryEventSource, logger: Logger, batchSize: Int32 = 1000,
    deliverabilityGuard: DeliverabilityGuard = DeliverabilityGuard()
  ) {
    self.store = CampaignStore(client: client, logger: logger)
    self.source = source
    self.logger = logger
    self.batchSize = batchSize
    self.deliverabilityGuard = deliverabilityGuard
  }

  static let dayFormat: Date.ISO8601FormatStyle = .iso8601.year().month().day()

  /// Applies the next batch of events; returns how many it applied.
  @discardableResult
  package func pollOnce() async throws -> Int {
    let (store, source, batchSize, deliverabilityGuard, logger) = (
      self.store, self.source, self.batchSize, self.deliverabilityGuard, self.logger
    )
    let (applied, paused) = try await store.transaction { connection -> (Int, [(UUID, String)]) in
      let cursor = try await store.lockFeedCursor(on: connection)
      let response = try await source.events(after: cursor, limit: batchSize)
      guard !response.events.isEmpty else { return (0, []) }

      // A campaign message's variant is its recipient's outbox entry's.
      let recipients = Array(
        Set(
          response.events.compactMap { event in
            UUID(text: event.campaignID).flatMap { campaign in
              UUID(text: event.subscriberID).map { FeedRecipient(campaign: campaign, subscriber: $0) }
            }
          }))
      var states = try await store.touchStates(of: recipients, on: connection)

      var days: [DailyStatKey: DailyStatDelta] = [:]
      var engagement: [UUID: EngagementDelta] = [:]
      var touches: [FeedRecipient: TouchDelta] = [:]
      // Journey messages (no campaign): each one's first delivery, bounce, open and click.
      var journeyTouches: [UUID: TouchDelta] = [:]
      // Engagement with campaigns, for journeys triggered by it (SPEC §12).
      var engaged: [String: [(subscriber: UUID, properties: String)]] = [:]
      for event in response.events {
        let at = event.occurredAt.date
        if event.campaignID.isEmpty, !event.machine, let message = UUID(text: event.messageID) {
          var touch = journeyTouches[message] ?? TouchDelta(variant: "")
          switch event.status {
          case "sent", "delivered": touch.deliveredAt = min(touch.deliveredAt ?? at, at)
          case "bounced": touch.bouncedAt = min(touch.bouncedAt ?? at, at)
          case "opened": touch.openedAt = min(touch.openedAt ?? at, at)
          case "clicked":
            touch.clickedAt = min(touch.clickedAt ?? at, at)
            touch.openedAt = min(touch.openedAt ?? at, at)
          default: break
          }
          if touch.deliveredAt != nil || touch.bouncedAt != nil || touch.openedAt != nil || touch.clickedAt != nil {
            journeyTouches[message] = touch
          }
        }
        if !event.machine, ["opened", "clicked", "replied"].contains(event.status), !event.campaignID.isEmpty,
          let subscriber = UUID(text: event.subscriberID)
        {
          engaged[JourneyEvents.engagement(event.status), default: []].append(
            (subscriber, CampaignStore.properties(["campaign_id": .string(event.campaignID.lowercased())])))
        }
        if let campaign = UUID(text: event.campaignID), Self.countedStatuses.contains(event.status) {
          let recipient = UUID(text: event.subscriberID).map { FeedRecipient(campaign: campaign, subscriber: $0) }
          let variant = recipient.flatMap { states[$0]?.variant } ?? "(unknown)"
          let day = at.formatted(Self.dayFormat)
          // Opens and clicks judged a machine's are counted apart, and are no engagement.
          let status = event.machine ? "machine_\(event.status)" : event.status
          let key = DailyStatKey(campaign: campaign, variant: variant, day: day, status: status)
          days[key, default: DailyStatDelta()].events += 1
          days[key, default: DailyStatDelta()].costCents += event.costCents
          // A recipient's last delivery, open and click (a human's), and their first open and click
          // counted once (SPEC §13).
          if !event.machine, let recipient, var state = states[recipient] {
            var touch = touches[recipient] ?? TouchDelta(variant: state.variant)
            switch event.status {
            case "sent", "delivered": touch.deliveredAt = max(touch.deliveredAt ?? at, at)
            case "bounced": touch.bouncedAt = max(touch.bouncedAt ?? at, at)
            case "opened":
              touch.openedAt = max(touch.openedAt ?? at, at)
              if !state.opened {
                state.opened = true
                days[DailyStatKey(campaign: campaign, variant: variant, day: day, status: "unique_opened"), default: DailyStatDelta()]
                  .events += 1
              }
            case "clicked":
              touch.clickedAt = max(touch.clickedAt ?? at, at)
              // A click is an open too (images blocked): click-to-open stays at most 100 %.
              touch.openedAt = max(touch.openedAt ?? at, at)
              if !state.opened {
                state.opened = true
                days[DailyStatKey(campaign: campaign, variant: variant, day: day, status: "unique_opened"), default: DailyStatDelta()]
                  .events += 1
              }
              if !state.clicked {
                state.clicked = true
                days[DailyStatKey(campaign: campaign, variant: variant, day: day, status: "unique_clicked"), default: DailyStatDelta()]
                  .events += 1
              }
            default: break
            }
            states[recipient] = state
            if touch.deliveredAt != nil || touch.bouncedAt != nil || touch.openedAt != nil || touch.clickedAt != nil {
              touches[recipient] = touch
            }
          }
        }
        if !event.machine, let subscriber = UUID(text: event.subscriberID) {
          var entry = engagement[subscriber, default: EngagementDelta()]
          switch event.status {
          case "delivered": entry.delivered += 1
          case "opened": entry.opened += 1
          case "clicked": entry.clicked += 1
          case "bounced": entry.bounced += 1
          case "complained": entry.complained += 1
          case "replied": entry.replied += 1
          default: break
          }
          entry.lastEvent = max(entry.lastEvent, at)
          engagement[subscriber] = entry
        }
      }

      try await store.addDailyStats(days, on: connection)
      try await store.addTouches(touches, on: connection)
      try await store.addEngagement(engagement, on: connection)
      for (message, subscriber, journey, step) in try await store.addJourneyEngagement(journeyTouches, on: connection) {
        guard let touch = journeyTouches[message] else { continue }
        let properties = CampaignStore.properties(["journey_id": .string(journey.lowercasedString), "step": .string(step)])
        if touch.openedAt != nil { engaged[JourneyEvents.engagement("opened"), default: []].append((subscriber, properties)) }
        if touch.clickedAt != nil { engaged[JourneyEvents.engagement("clicked"), default: []].append((subscriber, properties)) }
      }
      for (name, rows) in engaged.sorted(by: { $0.key < $1.key }) {
        try await store.recordHeraldEvents(name, rows, on: connection)
      }
      // Push tokens the push services no longer know (the app was uninstalled): never used again.
      let refused = response.events.compactMap { event -> (platform: String, token: String)? in
        let parts = event.refusedPushToken.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        return (String(parts[0]), String(parts[1]))
      }
      let retired = try await store.retireRefusedPushTokens(refused, on: connection)
      if retired > 0 { Counter(label: "herald_campaign_push_tokens_retired_total").increment(by: retired) }
      try await store.advanceFeed(to: response.nextCursor, applied: response.events.count, on: connection)
      // Every campaign the batch counted for: complaints and bounces raise its rates, and sends can
      // take it past the minimum at which they are judged.
      let judged = Set(days.keys.map(\.campaign))
      let paused = try await deliverabilityGuard.enforce(on: Array(judged), connection: connection, logger: logger)
      return (response.events.count, paused)
    }
    if applied > 0 { Counter(label: "herald_campaign_delivery_events_applied_total").increment(by: applied) }
    for (campaign, reason) in paused {
      logger.warning("campaign paused", metadata: ["campaign": "\(campaign.lowercasedString)", "reason": "\(reason)"])
      Counter(label: "herald_campaign_guard_paused_total").increment()
    }
    return applied
  }

  package func run(idle: Duration = .seconds(1)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await pollOnce() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("delivery feed poll failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}
