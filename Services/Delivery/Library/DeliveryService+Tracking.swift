import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// Hits of the tracking links (the gateway's public `/t/o/TOKEN` and `/t/c/TOKEN`, SPEC §10).
extension DeliveryService {
  package func recordTrackingHit(
    request: Herald_Delivery_V1_RecordTrackingHitRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_RecordTrackingHitResponse {
    let kind: TrackingToken.Kind
    switch request.kind {
    case "open": kind = .open
    case "click": kind = .click
    default: throw RPCError.field("kind", .invalidArgument, "kind '\(request.kind)' must be open or click")
    }
    guard request.method.isEmpty || request.method == "GET" || request.method == "HEAD" else {
      throw RPCError.field("method", .invalidArgument, "method '\(request.method)' must be GET or HEAD")
    }
    guard let token = tracking.verify(request.token) else {
      throw RPCError.field("token", .invalidArgument, "token is not a genuine tracking link")
    }
    guard token.kind == kind else {
      throw RPCError.field("token", .invalidArgument, "token is a tracking link of kind \(token.kind.name), not \(kind.name)")
    }
    var response = Herald_Delivery_V1_RecordTrackingHitResponse()
    response.targetURL = token.url
    if let (message, engagement, recorded) = try await store.recordTrackingHit(
      token, userAgent: request.userAgent, remoteAddress: request.remoteAddress,
      method: request.method.isEmpty ? "GET" : request.method)
    {
      response.recorded = recorded
      response.messageID = message.lowercasedString
      response.machine = engagement.machine
      response.signals = engagement.signals
    }
    return response
  }
}
