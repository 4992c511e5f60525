import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit
import Logging
import ServiceLifecycle

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

  /// What one process holds: its counters and its place among the members.
  struct Node: Sendable {
    let store: LimitStore
    let limiter: RateLimiter
    let membership: Membership
  }

  package static func make(settings: RateLimitSettings = RateLimitSettings()) -> ServiceDefinition {
    let node = PerProcess { resources in
      let store = LimitStore(client: resources.database, logger: resources.logger)
      let configuration = resources.configuration
      let host = configuration.host == "0.0.0.0" ? ProcessInfo.processInfo.hostName : configuration.host
      return Node(
        store: store, limiter: RateLimiter(store: store, logger: resources.logger),
        membership: Membership(
          address: settings.advertiseAddress ?? "\(host):\(configuration.port)", ttl: settings.memberTTL,
          client: resources.database, logger: resources.logger))
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
        let logger = resources.logger
        let state = BackgroundWorker(name: "ratelimit-state") {
          // One loop, so that counters are saved by one task at a time: it saves changed hour and
          // day counters every flush interval and, every heartbeat, heartbeats, re-reads members
          // and limits, runs the connections to new members and hands over the keys this replica
          // no longer owns. At the end it leaves the ring, then saves what is left.
          await withDiscardingTaskGroup { group in
            var lastHeartbeat: ContinuousClock.Instant?
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
              do {
                if lastHeartbeat.map({ .now - $0 >= settings.heartbeat }) ?? true {
                  lastHeartbeat = .now
                  let joined = try await node.membership.heartbeat()
                  for client in joined { group.addTask { try? await client.runConnections() } }
                  node.limiter.setLimits(try await node.store.all())
                  try await node.limiter.release { !node.membership.owns($0) }
                } else {
                  try await node.limiter.flush()
                }
              } catch {
                logger.error("rate-limit heartbeat or counter save failed (retried next round)", metadata: ["error": "\(error)"])
              }
              await BackgroundWorker.pause(settings.flushInterval)
            }
            await node.membership.leave()
            do {
              try await node.limiter.flush()
            } catch {
              logger.error("saving hour and day counters at shutdown failed", metadata: ["error": "\(error)"])
            }
            node.membership.closeConnections()
          }
        }
        return [state]
      },
      prepare: { resources in
        let node = node(resources)
        if let path = settings.limitsFile {
          let limits = try LimitDefinition.loadFile(path)
          for limit in limits { _ = try await node.store.put(limit) }
          resources.logger.info("limits file applied", metadata: ["limits": "\(limits.count)", "file": "\(path)"])
        }
        node.limiter.setLimits(try await node.store.all())
      })
  }
}
