import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import Hummingbird
import SwiftProtobuf

/// `/v1/rate-limits`: the limits in force and the live counters of every replica; limits created,
/// replaced and removed; decisions asked by hand. Relayed to the rate-limit service.
struct RateLimitController {
  typealias Client = Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>
  let rateLimit: Client

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    let rateLimit = self.rateLimit
    let routes = ProtoRoutes(group: group, service: "ratelimit")

    routes.get("rate-limits") { _ in try await rateLimit.getRateLimitState(.init()) }
    routes.post("rate-limits", scope: "ratelimit:write") { (body: Herald_Ratelimit_V1_PutLimitRequest) in
      try await rateLimit.putLimit(body)
    }
    // The key as the limit shows it, e.g. /v1/rate-limits/domain=gmail.com,provider=smtp-primary.
    routes.delete("rate-limits/:id", scope: "ratelimit:write") { key in
      guard try await rateLimit.deleteLimit(.with { $0.key = key }).deleted else {
        throw RPCError(code: .notFound, message: "no limit has the key '\(key)'")
      }
      return Herald_Ratelimit_V1_DeleteLimitResponse.with { $0.deleted = true }
    }
    // Takes hits like a sender would (or only looks, with "peek": true).
    routes.post("rate-limits/check", scope: "ratelimit:write") { (body: Herald_Ratelimit_V1_ShouldRateLimitRequest) in
      var body = body
      body.forwarded = false
      return try await rateLimit.shouldRateLimit(body)
    }
  }
}
