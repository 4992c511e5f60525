import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import HeraldServerKit
import Logging
import SwiftProtobuf

/// `herald.ratelimit.v1.RateLimitService`: decides the checks whose keys this replica owns and
/// forwards the others to their owners.
package struct RateLimitService: Herald_Ratelimit_V1_RateLimitService.SimpleServiceProtocol {
  package static let maxChecks = 10_000

  let store: LimitStore
  let limiter: RateLimiter
  let membership: Membership
  let settings: RateLimitSettings
  let logger: Logger

  package init(store: LimitStore, limiter: RateLimiter, membership: Membership, settings: RateLimitSettings, logger: Logger) {
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
    let limits = request.forwarded ? [] : limiter.limits(for: checks)
    for (index, check) in checks.enumerated() {
      if request.forwarded || limits[index] == nil {
        local.append(index)
        continue
      }
      switch membership.route(of: check.key) {
      case .here: local.append(index)
      case .forward(let owner, let client): remote[owner, default: (client, [])].indexes.append(index)
      case .unreachable(let owner): statuses[index] = failureStatus(check, owner: owner)
      }
    }
    if !local.isEmpty {
      do {
        let outcomes = try await limiter.decide(local.map { checks[$0] }, peek: request.peek)
        for (index, outcome) in zip(local, outcomes) { statuses[index] = Self.status(checks[index], outcome, owner: membership.id) }
      } catch {
        // The saved hour/day counters could not be read: these checks get the policy's answer.
        logger.error("reading saved counters failed; the failure policy decides", metadata: ["error": "\(error)"])
        for index in local { statuses[index] = failureStatus(checks[index], owner: membership.id) }
      }
    }
    if !remote.isEmpty {
      await withTaskGroup(of: [(Int, Herald_Ratelimit_V1_RateLimitStatus)].self) { group in
        for (owner, route) in remote {
          group.addTask {
            await forward(route.indexes.map { (request.checks[$0], checks[$0]) }, peek: request.peek, to: owner, client: route.client)
              .enumerated().map { (route.indexes[$0.offset], $0.element) }
          }
        }
        for await answers in group {
          for (index, status) in answers { statuses[index] = status }
        }
      }
    }
    var response = Herald_Ratelimit_V1_ShouldRateLimitResponse()
    response.statuses = statuses
    response.overallCode = statuses.contains { $0.code == .overLimit } ? .overLimit : .ok
    return response
  }

  /// Asks the owner; an owner that does not answer gets the configured failure policy's answer.
  func forward(
    _ checks: [(message: Herald_Ratelimit_V1_RateLimitCheck, check: Check)], peek: Bool, to owner: String,
    client: GRPCClient<HTTP2ClientTransport.Posix>
  ) async -> [Herald_Ratelimit_V1_RateLimitStatus] {
    var request = Herald_Ratelimit_V1_ShouldRateLimitRequest()
    request.checks = checks.map(\.message)
    request.peek = peek
    request.forwarded = true
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
        metadata: ["owner": "\(owner)", "policy": "\(settings.failurePolicy.rawValue)", "error": "\(error)"])
      return checks.map { failureStatus($0.check, owner: owner) }
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
    status.resetAt = Google_Protobuf_Timestamp(timeIntervalSince1970: decision.resetAt)
    status.retryAfterMs = decision.allowed ? 0 : Int64((decision.retryAfter * 1000).rounded(.up))
    status.unit = unit(limit.unit)
    return status
  }

  // MARK: Limits

  package func putLimit(
    request: Herald_Ratelimit_V1_PutLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_Limit {
    let stored = try await store.put(try LimitDefinition(validating: request))
    limiter.upsertLimit(stored)
    return Self.message(stored)
  }

  package func listLimits(
    request: Herald_Ratelimit_V1_ListLimitsRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_ListLimitsResponse {
    var response = Herald_Ratelimit_V1_ListLimitsResponse()
    response.limits = try await store.all().map(Self.message)
    return response
  }

  package func deleteLimit(
    request: Herald_Ratelimit_V1_DeleteLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_DeleteLimitResponse {
    guard !request.key.isEmpty else { throw RPCError.field("key", .invalidArgument, "key is empty: name the limit, e.g. provider=smtp-primary") }
    var response = Herald_Ratelimit_V1_DeleteLimitResponse()
    response.deleted = try await store.delete(key: request.key)
    limiter.removeLimit(key: request.key)
    return response
  }

  // MARK: State

  package func getRateLimitState(
    request: Herald_Ratelimit_V1_GetRateLimitStateRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_GetRateLimitStateResponse {
    var response = Herald_Ratelimit_V1_GetRateLimitStateResponse()
    if !request.localOnly { response.limits = try await store.all().map(Self.message) }
    let shares = membership.shares
    response.members = membership.members.map { member in
      var message = Herald_Ratelimit_V1_Member()
      message.id = member.id
      message.address = member.address
      message.startedAt = Google_Protobuf_Timestamp(date: member.startedAt)
      message.heartbeatAt = Google_Protobuf_Timestamp(date: member.heartbeatAt)
      message.ringShare = shares[member.id] ?? 0
      return message
    }
    response.counters = limiter.snapshot().map { counter in
      var message = Herald_Ratelimit_V1_Counter()
      message.key = counter.key
      message.limitKey = counter.limit.key
      message.owner = membership.id
      message.limit = counter.decision.limit
      message.remaining = counter.decision.remaining
      message.resetAt = Google_Protobuf_Timestamp(timeIntervalSince1970: counter.decision.resetAt)
      message.unit = Self.unit(counter.limit.unit)
      message.algorithm = Self.algorithm(counter.limit.algorithm)
      return message
    }
    guard !request.localOnly else { return response }
    await withTaskGroup(of: (String, Herald_Ratelimit_V1_GetRateLimitStateResponse?).self) { group in
      for member in membership.members where member.id != membership.id {
        guard let client = membership.client(of: member.id) else {
          response.unreachable.append(member.id)
          continue
        }
        group.addTask {
          let answer = try? await Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
            .getRateLimitState(.with { $0.localOnly = true }, options: .timeout(settings.forwardTimeout))
          return (member.id, answer)
        }
      }
      for await (member, answer) in group {
        if let answer { response.counters += answer.counters } else { response.unreachable.append(member) }
      }
    }
    response.counters.sort { $0.key < $1.key }
    response.unreachable.sort()
    return response
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

  static func message(_ limit: LimitDefinition) -> Herald_Ratelimit_V1_Limit {
    var message = Herald_Ratelimit_V1_Limit()
    message.key = limit.key
    message.descriptors = limit.descriptors.map { descriptor in
      var message = Herald_Ratelimit_V1_Descriptor()
      message.key = descriptor.key
      message.value = descriptor.value
      return message
    }
    message.requestsPerUnit = limit.requestsPerUnit
    message.unit = unit(limit.unit)
    message.algorithm = algorithm(limit.algorithm)
    message.burst = limit.burst
    if let warmup = limit.warmup {
      message.warmup.startDate = warmup.startDate
      message.warmup.dailyVolumes = warmup.dailyVolumes
    }
    if let updatedAt = limit.updatedAt { message.updatedAt = Google_Protobuf_Timestamp(date: updatedAt) }
    return message
  }
}
