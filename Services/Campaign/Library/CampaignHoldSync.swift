import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import ServiceLifecycle
import SwiftProtobuf

/// Where pauses, resumes and cancels go: the delivery service's `HoldCampaignMessages`.
package protocol CampaignHoldSink: Sendable {
  func holdCampaignMessages(
    _ request: Herald_Delivery_V1_HoldCampaignMessagesRequest
  ) async throws -> Herald_Delivery_V1_HoldCampaignMessagesResponse
}

/// Tells delivery of each pause (by an operator or the deliverability guard), resume and cancel,
/// so that the messages a campaign already handed over are held, released or cancelled too: the
/// relay works ahead of delivery, so most of a campaign is in delivery's queue soon after it
/// starts. A status change marks the campaign (`delivery_pending`, in its transaction); this loop
/// locks a marked campaign (skipping those another replica holds), tells delivery and clears the
/// mark in that transaction, so its status cannot change in between and no two replicas tell
/// delivery of one campaign at once. Until delivery answers it is retried: nothing is lost while
/// delivery is down.
package struct CampaignHoldSync: Sendable {
  let store: CampaignStore
  let sink: any CampaignHoldSink
  let logger: Logger

  package init(store: CampaignStore, sink: any CampaignHoldSink, logger: Logger) {
    self.store = store
    self.sink = sink
    self.logger = logger
  }

  /// Tells delivery of every pending change (at most 100 a call); returns how many campaigns it
  /// brought in line.
  @discardableResult
  package func syncOnce() async throws -> Int {
    var done = 0
    while done < 100, try await store.withNextPendingDelivery({ campaign in try await tell(campaign) }) { done += 1 }
    return done
  }

  func tell(_ campaign: (id: UUID, status: String, reason: String)) async throws {
    let action: Herald_Delivery_V1_CampaignHoldAction
    switch campaign.status {
    case "paused": action = .hold
    // Resumed; a resumed campaign with nothing left to relay is marked sent at once.
    case "sending", "sent": action = .release
    case "cancelled": action = .cancel
    default: return  // failed since: nothing is held for it
    }
    do {
      let answer = try await sink.holdCampaignMessages(
        .with {
          $0.campaignID = campaign.id.lowercasedString
          $0.action = action
          $0.reason = campaign.reason
        })
      logger.info(
        "delivery told of a campaign's \(campaign.status)",
        metadata: ["campaign": "\(campaign.id.lowercasedString)", "messages": "\(answer.messages)"])
    } catch let error as RPCError where error.code == .failedPrecondition && action == .release {
      // Delivery has the campaign cancelled: its messages stay cancelled, which is no error.
      logger.warning("delivery keeps the campaign's messages cancelled", metadata: ["campaign": "\(campaign.id)"])
    }
  }

  /// The background loop.
  package func run(interval: Duration = .milliseconds(500)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await syncOnce() == 0 { await BackgroundWorker.pause(interval) }
      } catch {
        logger.error("telling delivery of a pause, resume or cancel failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}
