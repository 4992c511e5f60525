import GRPCCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// The state of the ring: the members this replica sees with their share of the keys, and the
/// counters held here (or, unless `local_only`, on every member).
extension RateLimitService {
  package func getRateLimitState(
    request: Herald_Ratelimit_V1_GetRateLimitStateRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_GetRateLimitStateResponse {
    var response = Herald_Ratelimit_V1_GetRateLimitStateResponse()
    if !request.localOnly { response.limits = try await store.limits().map(Self.message) }
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
      message.resetAt = Google_Protobuf_Timestamp(clampingTimeIntervalSince1970: counter.decision.resetAt)
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
}
