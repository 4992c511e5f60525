import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.ratelimit.v1.RateLimitService`.
package struct RateLimitService: Herald_Ratelimit_V1_RateLimitService.SimpleServiceProtocol {
  let store: any LimitStore

  package init(store: any LimitStore) {
    self.store = store
  }

  package func putLimit(
    request: Herald_Ratelimit_V1_PutLimitRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_Limit {
    Self.message(try await store.put(try Self.validate(request)))
  }

  package func listLimits(
    request: Herald_Ratelimit_V1_ListLimitsRequest, context: ServerContext
  ) async throws -> Herald_Ratelimit_V1_ListLimitsResponse {
    var response = Herald_Ratelimit_V1_ListLimitsResponse()
    response.limits = try await store.all().map(Self.message)
    return response
  }

  static func validate(_ request: Herald_Ratelimit_V1_PutLimitRequest) throws -> LimitDefinition {
    guard !request.descriptors.isEmpty else {
      throw RPCError.field("descriptors", .invalidArgument, "descriptors is empty: a limit applies to at least one")
    }
    var seen = Set<String>()
    for (index, descriptor) in request.descriptors.enumerated() {
      for (part, text) in [("key", descriptor.key), ("value", descriptor.value)] {
        guard !text.isEmpty, text.utf8.count <= 128, !text.contains("="), !text.contains(","),
          !text.contains(where: \.isWhitespace)
        else {
          throw RPCError.field(
            "descriptors[\(index)].\(part)", .invalidArgument,
            "descriptors[\(index)].\(part) must be 1 to 128 characters without '=', ',' or spaces")
        }
      }
      guard seen.insert(descriptor.key).inserted else {
        throw RPCError.field("descriptors[\(index)].key", .invalidArgument, "descriptor key '\(descriptor.key)' is repeated")
      }
    }
    guard request.requestsPerUnit > 0 else {
      throw RPCError.field("requests_per_unit", .invalidArgument, "requests_per_unit must be positive")
    }
    let unit: LimitDefinition.Unit
    switch request.unit {
    case .second: unit = .second
    case .minute: unit = .minute
    case .hour: unit = .hour
    case .day: unit = .day
    case .unspecified, .UNRECOGNIZED: throw RPCError.field("unit", .invalidArgument, "unit must be second, minute, hour or day")
    }
    let algorithm: LimitDefinition.Algorithm
    switch request.algorithm {
    case .tokenBucket, .unspecified: algorithm = .tokenBucket
    case .slidingWindow: algorithm = .slidingWindow
    case .UNRECOGNIZED(let value): throw RPCError.field("algorithm", .invalidArgument, "algorithm \(value) is not known")
    }
    guard request.burst >= 0 else { throw RPCError.field("burst", .invalidArgument, "burst must not be negative") }
    return LimitDefinition(
      descriptors: request.descriptors.map { ($0.key, $0.value) }.sorted { $0.key < $1.key },
      requestsPerUnit: request.requestsPerUnit, unit: unit, algorithm: algorithm,
      burst: request.burst == 0 ? request.requestsPerUnit : request.burst)
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
    switch limit.unit {
    case .second: message.unit = .second
    case .minute: message.unit = .minute
    case .hour: message.unit = .hour
    case .day: message.unit = .day
    }
    message.algorithm = limit.algorithm == .tokenBucket ? .tokenBucket : .slidingWindow
    message.burst = limit.burst
    if let updatedAt = limit.updatedAt { message.updatedAt = Google_Protobuf_Timestamp(date: updatedAt) }
    return message
  }
}
