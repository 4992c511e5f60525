import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit
import Logging
import ServiceLifecycle

/// How a rate-limit replica behaves; from `HERALD_RATELIMIT_*` variables.
package struct RateLimitSettings: Sendable, Equatable {
  package enum FailurePolicy: String, Sendable { case open, closed }

  /// Limits applied at every start (they win over API edits of the same keys).
  package var limitsFile: String?
  /// `host:port` the other replicas reach this one at; by default the gRPC listen address (with
  /// the host name in place of 0.0.0.0).
  package var advertiseAddress: String?
  package var heartbeat: Duration = .seconds(1)
  /// A member whose last heartbeat is older than this is gone and its keys move.
  package var memberTTL: Duration = .seconds(3)
  /// How often changed hour and day counters are written.
  package var flushInterval: Duration = .milliseconds(250)
  package var forwardTimeout: Duration = .milliseconds(500)
  /// The answer for keys whose owner does not answer: allow (open) or refuse (closed).
  package var failurePolicy = FailurePolicy.open

  package init() {}

  package static func load(_ settings: Settings) throws -> RateLimitSettings {
    var result = RateLimitSettings()
    result.limitsFile = settings.optionalString("HERALD_RATELIMIT_LIMITS_FILE")
    result.advertiseAddress = settings.optionalString("HERALD_RATELIMIT_ADVERTISE_ADDR")
    if let address = result.advertiseAddress, ServiceAddress(address) == nil {
      throw ConfigurationError.malformed(variable: "HERALD_RATELIMIT_ADVERTISE_ADDR", value: address, expected: "host:port")
    }
    result.heartbeat = try settings.duration("HERALD_RATELIMIT_HEARTBEAT", default: result.heartbeat)
    result.memberTTL = try settings.duration("HERALD_RATELIMIT_MEMBER_TTL", default: result.memberTTL)
    guard result.memberTTL > result.heartbeat * 2 else {
      throw ConfigurationError.malformed(
        variable: "HERALD_RATELIMIT_MEMBER_TTL", value: "\(result.memberTTL)",
        expected: "more than twice HERALD_RATELIMIT_HEARTBEAT (\(result.heartbeat))")
    }
    result.flushInterval = try settings.duration("HERALD_RATELIMIT_FLUSH_INTERVAL", default: result.flushInterval)
    result.forwardTimeout = try settings.duration("HERALD_RATELIMIT_FORWARD_TIMEOUT", default: result.forwardTimeout)
    let policy = settings.string("HERALD_RATELIMIT_FAILURE_POLICY", default: "open")
    guard let failurePolicy = FailurePolicy(rawValue: policy) else {
      throw ConfigurationError.malformed(variable: "HERALD_RATELIMIT_FAILURE_POLICY", value: policy, expected: "open or closed")
    }
    result.failurePolicy = failurePolicy
    return result
  }
}

/// The rate-limit process (SPEC §4): decisions over descriptors, limits from a file and the API,
/// one owner per key among the live replicas.
package enum RateLimitDefinition {
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
      name: "ratelimit",
      grpcServices: [Herald_Ratelimit_V1_RateLimitService.descriptor.fullyQualifiedService],
      migrations: HeraldMigrations.ratelimit,
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
