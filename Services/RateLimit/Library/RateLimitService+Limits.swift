import GRPCCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Limits (SPEC §4): written to the store and applied here at once; the other replicas load them
/// with their next heartbeat.
extension RateLimitService {
  package func putLimit(
    request: Herald_Ratelimit_V1_PutLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_Limit {
    let stored = try await store.putLimit(try LimitDefinition(validating: request))
    limiter.upsertLimit(stored)
    return Self.message(stored)
  }

  package func listLimits(
    request: Herald_Ratelimit_V1_ListLimitsRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_ListLimitsResponse {
    var response = Herald_Ratelimit_V1_ListLimitsResponse()
    response.limits = try await store.limits().map(Self.message)
    return response
  }

  package func deleteLimit(
    request: Herald_Ratelimit_V1_DeleteLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_DeleteLimitResponse {
    guard !request.key.isEmpty else {
      throw RPCError.field("key", .invalidArgument, "key is empty: name the limit, e.g. provider=smtp-primary")
    }
    var response = Herald_Ratelimit_V1_DeleteLimitResponse()
    response.deleted = try await store.deleteLimit(key: request.key)
    limiter.removeLimit(key: request.key)
    return response
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
