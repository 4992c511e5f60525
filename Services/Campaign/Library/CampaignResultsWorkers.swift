import Foundation
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle

/// Decides A/B tests when their wait is over (SPEC §13): each due test is claimed with its
/// campaign (`FOR UPDATE SKIP LOCKED`), decided, and the rest of its audience written to the
/// outbox in one transaction (`CampaignStore.decideDueABTest`), so a test is decided once
/// whatever replicas run this or restart meanwhile. Metric: `herald_campaign_ab_tests_decided_total{outcome}`.
package struct ABTestDecider: Sendable {
  let store: CampaignStore
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.store = CampaignStore(client: client, logger: logger)
    self.logger = logger
  }

  /// Decides every test due at `now`; returns how many it decided. One that fails is logged and
  /// left for the next pass, and the others are decided meanwhile.
  @discardableResult
  package func decideDue(at now: Date) async throws -> Int {
    var decided = 0
    var failed: [UUID] = []
    while true {
      let result: (campaign: UUID, decision: ABDecision)?
      do {
        result = try await store.decideDueABTest(at: now, excluding: failed)
      } catch let failure as ABTestFailure {
        failed.append(failure.campaign)
        logger.error(
          "A/B test could not be decided; will retry",
          metadata: ["campaign": "\(failure.campaign.lowercasedString)", "error": "\(failure.error.logDescription)"])
        continue
      }
      guard let (campaign, decision) = result else { break }
      decided += 1
      Counter(label: "herald_campaign_ab_tests_decided_total", dimensions: [("outcome", decision.outcome)]).increment()
      logger.info(
        "A/B test decided",
        metadata: [
          "campaign": "\(campaign.lowercasedString)", "outcome": "\(decision.outcome)", "winner": "\(decision.winner ?? "")",
          "rest": "\(decision.restRecipients)", "reason": "\(decision.reason)",
        ])
    }
    return decided
  }

  package func run(interval: Duration = .seconds(5)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        try await decideDue(at: Date())
      } catch {
        logger.error("A/B test decision failed; will retry", metadata: ["error": "\(error.logDescription)"])
      }
      await BackgroundWorker.pause(interval)
    }
  }
}

/// Takes metric snapshots (SPEC §13) once a minute — one statement snapshots every campaign that
/// is due (`CampaignStore.takeSnapshots`) — and applies the retention rule once an hour.
/// Metric: `herald_campaign_snapshots_total` (rows written).
package struct MetricSnapshotter: Sendable {
  let store: CampaignStore
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.store = CampaignStore(client: client, logger: logger)
    self.logger = logger
  }

  /// One tick at `now`: the snapshots due, and the retention rule when `thin`.
  @discardableResult
  package func tick(at now: Date, thin: Bool = false) async throws -> (campaigns: Int, rows: Int) {
    let written = try await store.takeSnapshots(at: now)
    if written.rows > 0 { Counter(label: "herald_campaign_snapshots_total").increment(by: written.rows) }
    if thin {
      let deleted = try await store.thinSnapshots(at: now)
      if deleted > 0 { logger.info("old metric snapshots thinned", metadata: ["deleted": "\(deleted)"]) }
    }
    return written
  }

  package func run(interval: Duration = .seconds(60)) async {
    var lastThinned = Date.distantPast
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      let now = Date()
      do {
        let thin = now.timeIntervalSince(lastThinned) >= 3_600
        try await tick(at: now, thin: thin)
        if thin { lastThinned = now }
      } catch {
        logger.error("metric snapshot tick failed; will retry", metadata: ["error": "\(error.logDescription)"])
      }
      await BackgroundWorker.pause(interval)
    }
  }
}
