import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Synchronization

/// Asks the rate-limit service before a send (SPEC §3/§4), one call with a check per
/// descriptor: `provider=<name>`, `domain=<recipient domain>` and, when the provider has one,
/// `identity=<sending identity>`. An over-limit answer delays the message by the longest
/// retry-after; a service that does not answer lets the send go (and says so in the log), and is
/// not asked again for `refresh`, so that sends do not each wait for its deadline.
/// Descriptors no limit is defined for are not asked about (the limits are looked up every few
/// seconds), so a stack without limits makes no call per send.
package final class RateLimitThrottle: SendThrottle {
  let client: Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>
  let timeout: Duration
  let refresh: Duration
  let logger: Logger
  /// When a call last failed.
  private let failedAt = Mutex<ContinuousClock.Instant?>(nil)
  /// Descriptor keys some single-descriptor limit uses (nil: not known, ask about all), and when
  /// they were read.
  private let limited = Mutex<(keys: Set<String>?, readAt: ContinuousClock.Instant?)>((nil, nil))

  package init(
    client: GRPCClient<HTTP2ClientTransport.Posix>, timeout: Duration = .seconds(1), refresh: Duration = .seconds(5), logger: Logger
  ) {
    self.client = Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
    self.timeout = timeout
    self.refresh = refresh
    self.logger = logger
  }

  /// The descriptor keys worth asking about, read again once `refresh` has passed.
  func limitedKeys() async -> Set<String>? {
    let now = ContinuousClock.now
    let (keys, due) = limited.withLock { state -> (Set<String>?, Bool) in
      let due = state.readAt.map { now - $0 >= refresh } ?? true
      if due { state.readAt = now }  // one caller reads; the others use what is known
      return (state.keys, due)
    }
    guard due else { return keys }
    do {
      let limits = try await client.listLimits(.init(), options: options)
      let read = Set(limits.limits.filter { $0.descriptors.count == 1 }.map { $0.descriptors[0].key })
      limited.withLock { $0.keys = read }
      return read
    } catch {
      limited.withLock { $0.keys = nil }
      return nil
    }
  }

  var options: CallOptions { .timeout(timeout) }

  package func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration? {
    let now = ContinuousClock.now
    if let failed = failedAt.withLock({ $0 }), now - failed < refresh { return nil }
    let keys = await limitedKeys()
    var request = Herald_Ratelimit_V1_ShouldRateLimitRequest()
    for (key, value) in [("provider", provider), ("domain", recipientDomain), ("identity", sendingIdentity ?? "")]
    where Self.usable(value) && keys.map({ $0.contains(key) }) ?? true {
      var check = Herald_Ratelimit_V1_RateLimitCheck()
      var descriptor = Herald_Ratelimit_V1_Descriptor()
      descriptor.key = key
      descriptor.value = value
      check.descriptors = [descriptor]
      request.checks.append(check)
    }
    guard !request.checks.isEmpty else { return nil }
    do {
      let response = try await client.shouldRateLimit(request, options: options)
      failedAt.withLock { $0 = nil }
      guard response.overallCode == .overLimit else { return nil }
      let wait = response.statuses.filter { $0.code == .overLimit }.map(\.retryAfterMs).max() ?? 1000
      return .milliseconds(max(wait, 10))
    } catch {
      let first = failedAt.withLock { failed in
        defer { failed = .now }
        return failed == nil
      }
      logger.log(
        level: first ? .warning : .debug,
        "the rate-limit service did not answer; sending without its decisions for a while",
        metadata: ["error": "\(error.logDescription)", "retry_in": "\(refresh)"])
      return nil
    }
  }

  /// Descriptor values the service accepts (a provider name or domain always is).
  static func usable(_ value: String) -> Bool {
    !value.isEmpty && value.utf8.count <= 128 && value != "*"
      && !value.contains { $0 == "=" || $0 == "," || $0.isWhitespace }
  }
}
