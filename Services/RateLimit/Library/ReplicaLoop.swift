import GRPCCore
import HeraldPostgres
import HeraldServerKit
import Logging
import ServiceLifecycle

/// The background loop that keeps one replica's shared state: every flush interval it saves the
/// hour and day counters changed since the last round; every heartbeat it heartbeats instead,
/// re-reads the members and the limits, runs the connections to members that joined and hands over
/// the keys this replica no longer owns. It is one loop so that counters are saved by one task at a
/// time. At graceful shutdown it leaves the ring (the keys move at once), saves what is left and
/// closes the connections to the other members.
///
/// Graceful shutdown does not wait for a database that cannot be reached: a round waiting for a
/// connection is cancelled, and leaving and the last save get the member TTL, after which the
/// other replicas have taken the keys over anyway. (A statement already sent on a connection that
/// stopped answering cannot be cancelled; it ends when that connection does.)
struct ReplicaLoop: Sendable {
  let store: RateLimitStore
  let limiter: RateLimiter
  let membership: Membership
  let settings: RateLimitSettings
  let logger: Logger

  /// Returns once graceful shutdown begins and the replica has left; a failed round is logged and
  /// tried again the next round.
  func run() async {
    // The connections to the other members run in this group; `closeConnections` ends them.
    await withDiscardingTaskGroup { group in
      var lastHeartbeat: ContinuousClock.Instant?
      while !Task.isShuttingDownGracefully && !Task.isCancelled {
        do {
          if lastHeartbeat.map({ .now - $0 >= settings.heartbeat }) ?? true {
            lastHeartbeat = .now
            let joined = try await cancelWhenGracefulShutdown { try await membership.heartbeat() }
            for client in joined { group.addTask { try? await client.runConnections() } }
            try await cancelWhenGracefulShutdown {
              try await limiter.reloadLimits(from: store)
              try await limiter.release { !membership.owns($0) }
            }
          } else {
            try await cancelWhenGracefulShutdown { try await limiter.flush() }
          }
        } catch {
          // A round cut short by graceful shutdown is no failure: the shutdown saves what is left.
          if !Task.isShuttingDownGracefully {
            logger.error("rate-limit heartbeat or counter save failed (retried next round)", metadata: ["error": "\(error.logDescription)"])
          }
        }
        await BackgroundWorker.pause(settings.flushInterval)
      }
      do {
        try await answerWithin(settings.memberTTL) {
          await membership.leave()
          try await limiter.flush()
        }
      } catch {
        logger.error("saving hour and day counters at shutdown failed", metadata: ["error": "\(error.logDescription)"])
      }
      membership.closeConnections()
    }
  }
}
