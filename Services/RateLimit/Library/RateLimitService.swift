import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import SwiftProtobuf

/// `herald.ratelimit.v1.RateLimitService` (SPEC §4): its handlers check requests and map between
/// protobuf messages and the limiter's answers, by area: decisions (here: the checks whose keys this
/// replica owns are decided by its `RateLimiter`, the others forwarded to their owners), limits
/// (`RateLimitService+Limits.swift`) and the state of the counters and members (`+State`). Every
/// statement is the store's (`RateLimitStore`); the ring of members is `Membership`'s.
package struct RateLimitService: Herald_Ratelimit_V1_RateLimitService.SimpleServiceProtocol {
  package static let maxChecks = 10_000

  let store: RateLimitStore
  let limiter: RateLimiter
  let membership: Membership
  let settings: RateLimitSettings
  let logger: Logger

  package init(store: RateLimitStore, limiter: RateLimiter, membership: Membership, settings: RateLimitSettings, logger: Logger) {
    self.store = store
    self.limiter = limiter
    self.membership = membership
    self.settings = settings
    self.logger = logger
  }

  // MARK: Decisions

  package func shouldRateLimit(
    request: Herald_Ratelimit_V1_ShouldRateLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_ShouldRateLimitResponse {
    let checks = try Self.validate(request)
    var statuses = [Herald_Ratelimit_V1_RateLimitStatus](repeating: .init(), count: checks.count)
    // Checks no limit matches are answered here; the rest go to their key's owner (this replica
    // for the keys it owns, and for everything a peer forwarded).
    var local: [Int] = []
    var remote: [String: (client: GRPCClient<HTTP2ClientTransport.Posix>, indexes: [Int])] = [:]
    // The checks this replica answers itself (a forwarded one is the owner's to count, unless the
    // owner does not answer and the failure policy does here).
    var decidedHere: [Int] = []
    let limits = request.forwarded ? [] : limiter.limits(for: checks)
    for (index, check) in checks.enumerated() {
      if request.forwarded || limits[index] == nil {
        local.append(index)
        continue
      }
      switch membership.route(of: check.key) {
      case .here: local.append(index)
      case .forward(let owner, let client): remote[owner, default: (client, [])].indexes.append(index)
      case .unreachable(let owner):
        statuses[index] = failureStatus(check, owner: owner)
        decidedHere.append(index)
      }
    }
    if !local.isEmpty {
      do {
        let outcomes = try await limiter.decide(local.map { checks[$0] }, peek: request.peek)
        for (index, outcome) in zip(local, outcomes) { statuses[index] = Self.status(checks[index], outcome, owner: membership.id) }
      } catch {
        // The saved hour/day counters could not be read: these checks get the policy's answer.
        logger.error("reading saved counters failed; the failure policy decides", metadata: ["error": "\(error.logDescription)"])
        for index in local { statuses[index] = failureStatus(checks[index], owner: membership.id) }
      }
      decidedHere += local
    }
    if !remote.isEmpty {
      await withTaskGroup(of: (owner: String, indexes: [Int], statuses: [Herald_Ratelimit_V1_RateLimitStatus]?).self) { group in
        for (owner, route) in remote {
          group.addTask {
            let answer = await forward(route.indexes.map { request.checks[$0] }, peek: request.peek, to: owner, client: route.client)
            return (owner, route.indexes, answer)
          }
        }
        for await answer in group {
          if let answered = answer.statuses {
            for (index, status) in zip(answer.indexes, answered) { statuses[index] = status }
          } else {
            for index in answer.indexes { statuses[index] = failureStatus(checks[index], owner: answer.owner) }
            decidedHere += answer.indexes
          }
        }
      }
    }
    Self.countDecisions(decidedHere.map { statuses[$0] })
    var response = Herald_Ratelimit_V1_ShouldRateLimitResponse()
    response.statuses = statuses
    response.overallCode = statuses.contains { $0.code == .overLimit } ? .overLimit : .ok
    return response
  }

  /// Asks the owner; nil when it does not answer (the caller then applies the configured failure
  /// policy).
  func forward(
    _ checks: [Herald_Ratelimit_V1_RateLimitCheck], peek: Bool, to owner: String, client: GRPCClient<HTTP2ClientTransport.Posix>
  ) async -> [Herald_Ratelimit_V1_RateLimitStatus]? {
    var request = Herald_Ratelimit_V1_ShouldRateLimitRequest()
    request.checks = checks
    request.peek = peek
    request.forwarded = true
    Counter(label: "herald_ratelimit_forwarded_total").increment(by: checks.count)
    do {
      let response = try await Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
        .shouldRateLimit(request, options: .timeout(settings.forwardTimeout))
      guard response.statuses.count == checks.count else {
        throw RPCError(code: .internalError, message: "the owner answered \(response.statuses.count) of \(checks.count) checks")
      }
      return response.statuses
    } catch {
      logger.warning(
        "the owner of some keys did not answer; the failure policy decides",
        metadata: ["owner": "\(owner)", "policy": "\(settings.failurePolicy.rawValue)", "error": "\(error.logDescription)"])
      return nil
    }
  }

  /// The answer when the key's counter cannot be consulted: allowed (open) or refused with
  /// retry-after = the member TTL, after which the key has a live owner again (closed).
  func failureStatus(_ check: Check, owner: String) -> Herald_Ratelimit_V1_RateLimitStatus {
    var status = Herald_Ratelimit_V1_RateLimitStatus()
    status.key = check.key
    status.owner = owner
    status.byFailurePolicy = true
    switch settings.failurePolicy {
    case .open:
      status.code = .ok
    case .closed:
      status.code = .overLimit
      status.retryAfterMs = Int64(settings.memberTTL.milliseconds)
    }
    return status
  }

  static func validate(_ request: Herald_Ratelimit_V1_ShouldRateLimitRequest) throws(RPCError) -> [Check] {
    guard !request.checks.isEmpty else { throw .field("checks", .invalidArgument, "checks is empty: ask about at least one") }
    guard request.checks.count <= maxChecks else {
      throw .field("checks", .invalidArgument, "checks holds \(request.checks.count); at most \(maxChecks) go in one call")
    }
    return try request.checks.enumerated().map { (index, check) throws(RPCError) in
      guard check.hits >= 0, check.hits <= 1_000_000_000 else {
        throw .field("checks[\(index)].hits", .invalidArgument, "checks[\(index)].hits must be 0 (meaning 1) to 1,000,000,000")
      }
      let descriptors = try LimitDefinition.validated(check.descriptors, field: "checks[\(index)].descriptors", wildcards: false)
      return Check(descriptors: descriptors, hits: check.hits == 0 ? 1 : check.hits)
    }
  }

  static func status(_ check: Check, _ outcome: Outcome, owner: String) -> Herald_Ratelimit_V1_RateLimitStatus {
    var status = Herald_Ratelimit_V1_RateLimitStatus()
    status.code = outcome.allowed ? .ok : .overLimit
    status.owner = owner
    guard let limit = outcome.limit, let decision = outcome.decision else { return status }
    status.key = check.key
    status.limitKey = limit.key
    status.limit = decision.limit
    status.remaining = decision.remaining
    status.resetAt = Google_Protobuf_Timestamp(clampingTimeIntervalSince1970: decision.resetAt)
    // Capped, like reset_at, at the latest Timestamp: now + retry_after is never past reset_at
    // (and a far-off reset does not trap the conversion to Int64).
    let untilLatest = Google_Protobuf_Timestamp.latestSeconds - Date().timeIntervalSince1970
    status.retryAfterMs = decision.allowed ? 0 : Int64(max(0, min(decision.retryAfter, untilLatest) * 1000).rounded(.up))
    status.unit = unit(limit.unit)
    return status
  }

  /// Counts the checks this replica answered, by outcome: allowed (`ok`, also when no limit
  /// matched), refused (`over_limit`), or answered by the failure policy (`failure_policy`).
  static func countDecisions(_ statuses: [Herald_Ratelimit_V1_RateLimitStatus]) {
    var counts: [String: Int] = [:]
    for status in statuses {
      counts[status.byFailurePolicy ? "failure_policy" : status.code == .overLimit ? "over_limit" : "ok", default: 0] += 1
    }
    for (outcome, count) in counts {
      Counter(label: "herald_ratelimit_decisions_total", dimensions: [("outcome", outcome)]).increment(by: count)
    }
  }

  // MARK: Messages

  static func unit(_ unit: LimitDefinition.Unit) -> Herald_Ratelimit_V1_Unit {
    switch unit {
    case .second: .second
    case .minute: .minute
    case .hour: .hour
    case .day: .day
    }
  }

  static func algorithm(_ algorithm: LimitDefinition.Algorithm) -> Herald_Ratelimit_V1_Algorithm {
    switch algorithm {
    case .tokenBucket: .tokenBucket
    case .slidingWindow: .slidingWindow
    case .fixedWindow: .fixedWindow
    }
  }
}
