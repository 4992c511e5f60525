import Foundation
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle

/// Starts scheduled campaigns when due. Due campaigns are claimed with `FOR UPDATE SKIP LOCKED`
/// and started in the same transaction, so two replicas never start one twice. A campaign on a
/// channel without a provider, or an e-mail campaign without a way out for its recipients
/// (`CampaignStore.optOutProblem`), fails with that reason instead.
package struct CampaignScheduler: Sendable {
  let store: CampaignStore
  let links: UnsubscribeLinks
  let logger: Logger
  /// Which channels delivery serves (push and WhatsApp campaigns fail without a provider).
  let providers: (any ProviderDirectory)?

  package init(client: PostgresClient, links: UnsubscribeLinks = .none, providers: (any ProviderDirectory)? = nil, logger: Logger) {
    self.store = CampaignStore(client: client, logger: logger)
    self.links = links
    self.providers = providers
    self.logger = logger
  }

  /// Starts every due campaign; returns how many it started or failed.
  @discardableResult
  package func startDue() async throws -> Int {
    let (store, logger, links, providers) = (self.store, self.logger, self.links, self.providers)
    var handled = 0
    // Which channels delivery serves, asked once per pass when a push or WhatsApp campaign is due;
    // while delivery does not answer, those campaigns wait for a later pass and the others start.
    var served: Set<String>?
    var asked = false
    var skipping: [String] = []
    while true {
      if !asked, providers != nil, try await store.dueChannels().contains(where: CampaignStore.providerCheckedChannels.contains) {
        asked = true
        do {
          served = try await providers?.channelsWithProviders()
        } catch {
          skipping = CampaignStore.providerCheckedChannels.sorted()
          logger.warning(
            "delivery did not say which channels it serves; push and WhatsApp campaigns wait",
            metadata: ["error": "\(error.logDescription)"])
        }
      }
      let (servedNow, skippingNow) = (served, skipping)
      let started = try await store.transaction { connection -> Bool in
        guard let campaign = try await store.claimDueCampaign(skipping: skippingNow, on: connection) else { return false }
        let served = CampaignStore.providerCheckedChannels.contains(campaign.channel) ? servedNow : nil
        if let problem = CampaignStore.providerProblem(campaign.channel, served: served) {
          try await store.setStatus(campaign.id, to: "failed", reason: problem, on: connection)
          logger.warning("scheduled campaign failed: no provider for its channel", metadata: ["campaign": "\(campaign.id)"])
          return true
        }
        if let problem = try await store.optOutProblem(of: campaign, canSignLinks: links.canSign, on: connection) {
          try await store.setStatus(campaign.id, to: "failed", reason: problem.message, on: connection)
          logger.warning("scheduled campaign failed", metadata: ["campaign": "\(campaign.id)", "reason": "\(problem.message)"])
          return true
        }
        try await store.start(campaign, on: connection)
        logger.info("scheduled campaign started", metadata: ["campaign": "\(campaign.id)"])
        return true
      }
      guard started else { return handled }
      handled += 1
    }
  }

  package func run(interval: Duration = .seconds(1)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        try await startDue()
      } catch {
        logger.error("scheduler pass failed; will retry", metadata: ["error": "\(error.logDescription)"])
      }
      await BackgroundWorker.pause(interval)
    }
  }
}
