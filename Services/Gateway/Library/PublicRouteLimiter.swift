import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The rate limit of the public routes (SPEC §7: provider webhooks, unsubscribe links): a token
/// bucket per client address in this gateway replica (`HERALD_GATEWAY_PUBLIC_RATE` requests a
/// minute, bursts of half as many), so that nobody can flood them without a key. A request over
/// the limit is a 429 with `Retry-After`. Behind a proxy every client shares the proxy's address:
/// give the limit room for that.
package final class PublicRouteLimiter: Sendable {
  struct Bucket {
    var tokens: Double
    var at: ContinuousClock.Instant
  }

  let perSecond: Double
  let burst: Double
  private let buckets = Mutex<[String: Bucket]>([:])

  package init(perMinute: Int) {
    self.perSecond = Double(perMinute) / 60
    self.burst = max(1, Double(perMinute) / 2)
  }

  /// Takes one request of `client`; nil when it may go, else how long to wait.
  package func take(_ client: String, now: ContinuousClock.Instant = .now) -> Duration? {
    buckets.withLock { buckets in
      if buckets.count > 10_000 {
        // Forget the clients whose buckets have filled up again: they are as if new.
        buckets = buckets.filter { (now - $0.value.at) < .seconds(burst / perSecond) }
      }
      var bucket = buckets[client] ?? Bucket(tokens: burst, at: now)
      let elapsed = now - bucket.at
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      bucket.tokens = min(burst, bucket.tokens + seconds * perSecond)
      bucket.at = now
      guard bucket.tokens >= 1 else {
        buckets[client] = bucket
        return .seconds((1 - bucket.tokens) / perSecond)
      }
      bucket.tokens -= 1
      buckets[client] = bucket
      return nil
    }
  }
}

struct PublicRouteLimitMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  let limiter: PublicRouteLimiter

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    let client = context.remoteAddress?.ipAddress ?? "unknown"
    if let wait = limiter.take(client) {
      var problem = Problem(status: .tooManyRequests, detail: "too many requests from \(client) to public routes; try again later")
      problem.retryAfter = max(1, Int(wait.components.seconds) + 1)
      throw problem
    }
    return try await next(request, context)
  }
}
