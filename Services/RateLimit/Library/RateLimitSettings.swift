import Foundation
import HeraldCore

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
    // A bad limits file stops start-up here, naming the file and the entry.
    if let path = result.limitsFile { _ = try LimitDefinition.loadFile(path) }
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
