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
    while true {
      let started = try await store.transaction { connection -> Bool in
        guard let campaign = try await store.claimDueCampaign(on: connection) else { return false }
        // Delivery is asked only about push and WhatsApp; when it does not answer, the campaign
        // stays scheduled for the next pass (the transaction rolls back).
        var served: Set<String>?
        if CampaignStore.providerCheckedChannels.contains(campaign.channel) {
          served = try await providers?.channelsWithProviders()
        }
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
