import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit
import Logging

/// The rate-limit process (SPEC §4): decisions over descriptors, limits from a file and the API,
/// one owner per key among the live replicas.
package enum RateLimitDefinition: BackEndProcess {
  package static let name = "ratelimit"
  package static let migrations = HeraldMigrations.ratelimit

  package static func loadSettings(_ environment: Settings) throws -> RateLimitSettings {
    try RateLimitSettings.load(environment)
  }

  package static func definition(settings: RateLimitSettings) -> ServiceDefinition {
    make(settings: settings)
  }

  /// With the default settings; each call is a fresh process's worth of state.
  package static var definition: ServiceDefinition { make() }

  /// What one process holds, shared by the handlers, the replica loop, `prepare` and the metrics:
  /// its counters and its place among the members.
  struct Node: Sendable {
    let store: RateLimitStore
    let limiter: RateLimiter
    let membership: Membership
  }

  package static func make(settings: RateLimitSettings = RateLimitSettings()) -> ServiceDefinition {
    let node = PerProcess { resources in
      let store = RateLimitStore(client: resources.database, logger: resources.logger)
      let configuration = resources.configuration
      let host = configuration.host == "0.0.0.0" ? ProcessInfo.processInfo.hostName : configuration.host
      return Node(
        store: store, limiter: RateLimiter(store: store, logger: resources.logger),
        membership: Membership(
          address: settings.advertiseAddress ?? "\(host):\(configuration.port)", ttl: settings.memberTTL, store: store,
          logger: resources.logger))
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Ratelimit_V1_RateLimitService.descriptor.fullyQualifiedService],
      migrations: migrations,
      makeServices: { resources in
        let node = node(resources)
        return [
          RateLimitService(
            store: node.store, limiter: node.limiter, membership: node.membership, settings: settings, logger: resources.logger)
        ]
      },
      makeWorkers: { resources in
        let node = node(resources)
        let loop = ReplicaLoop(
          store: node.store, limiter: node.limiter, membership: node.membership, settings: settings, logger: resources.logger)
        return [BackgroundWorker(name: "ratelimit-state") { await loop.run() }]
      },
      prepare: { resources in
        let node = node(resources)
        if let path = settings.limitsFile {
          try await applyLimitsFile(path, to: node.store, logger: resources.logger)
        }
        try await node.limiter.reloadLimits(from: node.store)
      },
      collectMetrics: { resources, scrape in
        collectMetrics(node(resources), into: scrape)
      })
  }

  /// Writes the limits of `HERALD_RATELIMIT_LIMITS_FILE`, at every start (they win over API edits
  /// of the same keys).
  static func applyLimitsFile(_ path: String, to store: RateLimitStore, logger: Logger) async throws {
    let limits = try LimitDefinition.loadFile(path)
    for limit in limits { _ = try await store.putLimit(limit) }
    logger.info("limits file applied", metadata: ["limits": "\(limits.count)", "file": "\(path)"])
  }

  /// The figures read at each scrape, from this replica's memory: the live members it sees (replicas
  /// that disagree show different numbers) and the limits it applies. (Event counts are counters
  /// where they happen: decisions by outcome and forwarded checks in `RateLimitService`.)
  static func collectMetrics(_ node: Node, into scrape: MetricsScrape) {
    scrape.gauge(
      "herald_ratelimit_members", help: "Live members of the key ring as this replica sees them",
      Int64(node.membership.members.count))
    scrape.gauge("herald_ratelimit_limits", help: "Limits this replica applies", Int64(node.limiter.limitCount))
  }
}
