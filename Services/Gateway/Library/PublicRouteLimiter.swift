import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The rate limit of the public routes (SPEC §7: provider webhooks, unsubscribe links): a token
/// bucket per client address in this gateway replica (`HERALD_GATEWAY_PUBLIC_RATE` requests a
/// minute, bursts of half as many), so that nobody can flood them without a key. A request over
/// the limit is a 429 with `Retry-After`. Behind a proxy every client shares the proxy's address:
/// give the limit room for that. IPv6 clients are counted by their /64 (one host holds the whole
/// block). When the table passes 10,000 clients, the ones whose buckets have filled up again are
/// forgotten, at most once per doubling.
package final class PublicRouteLimiter: Sendable {
  struct Bucket {
    var tokens: Double
    var at: ContinuousClock.Instant
  }

  let perSecond: Double
  let burst: Double
  private let buckets = Mutex<(table: [String: Bucket], pruneAt: Int)>(([:], 10_000))

  package init(perMinute: Int) {
    self.perSecond = Double(perMinute) / 60
    self.burst = max(1, Double(perMinute) / 2)
  }

  /// How long `client` must wait before its next request counts, without taking one; nil: none.
  package func wait(_ client: String, now: ContinuousClock.Instant = .now) -> Duration? {
    buckets.withLock { state in
      guard let bucket = state.table[client] else { return nil }
      let elapsed = now - bucket.at
      let tokens = min(
        burst, bucket.tokens + (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * perSecond)
      return tokens >= 1 ? nil : .seconds((1 - tokens) / perSecond)
    }
  }

  /// Takes one request of `client`; nil when it may go, else how long to wait.
  package func take(_ client: String, now: ContinuousClock.Instant = .now) -> Duration? {
    buckets.withLock { state in
      if state.table.count > state.pruneAt {
        // Forget the clients whose buckets have filled up again: they are as if new.
        state.table = state.table.filter { (now - $0.value.at) < .seconds(burst / perSecond) }
        state.pruneAt = max(10_000, state.table.count * 2)
      }
      var bucket = state.table[client] ?? Bucket(tokens: burst, at: now)
      let elapsed = now - bucket.at
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      bucket.tokens = min(burst, bucket.tokens + seconds * perSecond)
      bucket.at = now
      guard bucket.tokens >= 1 else {
        state.table[client] = bucket
        return .seconds((1 - bucket.tokens) / perSecond)
      }
      bucket.tokens -= 1
      state.table[client] = bucket
      return nil
    }
  }

  /// The key a client is counted under: its IPv4 address, or the /64 of its IPv6 address.
  package static func client(_ address: SocketAddress?) -> String {
    guard let ip = address?.ipAddress else { return "unknown" }
    guard case .v6 = address, let groups = expandedIPv6(ip) else { return ip }
    return groups.prefix(4).map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
  }

  /// The eight groups of an IPv6 address written with or without `::` (an embedded IPv4 tail
  /// counts as two groups); nil when it is not one.
  static func expandedIPv6(_ text: String) -> [UInt16]? {
    func groups(_ part: Substring) -> [UInt16]? {
      guard !part.isEmpty else { return [] }
      var result: [UInt16] = []
      for piece in part.split(separator: ":", omittingEmptySubsequences: false) {
        if piece.contains(".") {
          let octets = piece.split(separator: ".").compactMap { UInt8($0) }
          guard octets.count == 4 else { return nil }
          result += [UInt16(octets[0]) << 8 | UInt16(octets[1]), UInt16(octets[2]) << 8 | UInt16(octets[3])]
        } else {
          guard let group = UInt16(piece, radix: 16) else { return nil }
          result.append(group)
        }
      }
      return result
    }
    let address = text.split(separator: "%").first.map(String.init) ?? text  // without a zone
    let halves = address.components(separatedBy: "::")
    guard halves.count <= 2, let head = groups(Substring(halves[0])) else { return nil }
    if halves.count == 1 { return head.count == 8 ? head : nil }
    guard let tail = groups(Substring(halves[1])), head.count + tail.count < 8 else { return nil }
    return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
  }
}

/// Limits the unsubscribe routes' requests; for provider webhooks and tracking links
/// (`onlyRefused`: 401 and 404) only the requests refused for their signature count, so a
/// provider posting its events at campaign speed, or a mail privacy proxy fetching the pixels of
/// many recipients, is never turned away while someone guessing signatures is.
struct PublicRouteLimitMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  let limiter: PublicRouteLimiter
  /// The status of a refused request, when only those count.
  var onlyRefused: HTTPResponse.Status? = nil

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    let client = PublicRouteLimiter.client(context.remoteAddress)
    if let refused = onlyRefused {
      if let wait = limiter.wait(client) { throw Self.tooMany(client, wait) }
      do {
        let response = try await next(request, context)
        if response.status == refused { _ = limiter.take(client) }
        return response
      } catch let problem as Problem where problem.status == refused {
        _ = limiter.take(client)
        throw problem
      }
    }
    if let wait = limiter.take(client) { throw Self.tooMany(client, wait) }
    return try await next(request, context)
  }

  static func tooMany(_ client: String, _ wait: Duration) -> Problem {
    var problem = Problem(status: .tooManyRequests, detail: "too many requests from \(client) to public routes; try again later")
    problem.retryAfter = max(1, Int(wait.components.seconds) + 1)
    return problem
  }
}
