import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import HeraldServerKit
import Logging
import Synchronization

/// Asks the rate-limit service before a send (SPEC §3/§4), one call with a check per
/// descriptor: `provider=<name>`, `domain=<recipient domain>` and, when the provider has one,
/// `identity=<sending identity>`. An over-limit answer delays the message by the longest
/// retry-after; a service that does not answer lets the send go (and says so in the log).
package final class RateLimitThrottle: SendThrottle {
  let client: Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>
  let timeout: Duration
  let logger: Logger
  private let lastWarning = Mutex<ContinuousClock.Instant?>(nil)

  package init(client: GRPCClient<HTTP2ClientTransport.Posix>, timeout: Duration = .seconds(1), logger: Logger) {
    self.client = Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
    self.timeout = timeout
    self.logger = logger
  }

  package func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration? {
    var request = Herald_Ratelimit_V1_ShouldRateLimitRequest()
    for (key, value) in [("provider", provider), ("domain", recipientDomain), ("identity", sendingIdentity ?? "")]
    where Self.usable(value) {
      var check = Herald_Ratelimit_V1_RateLimitCheck()
      var descriptor = Herald_Ratelimit_V1_Descriptor()
      descriptor.key = key
      descriptor.value = value
      check.descriptors = [descriptor]
      request.checks.append(check)
    }
    guard !request.checks.isEmpty else { return nil }
    do {
      let response = try await client.shouldRateLimit(request, options: .timeout(timeout))
      guard response.overallCode == .overLimit else { return nil }
      let wait = response.statuses.filter { $0.code == .overLimit }.map(\.retryAfterMs).max() ?? 1000
      return .milliseconds(max(wait, 10))
    } catch {
      let now = ContinuousClock.now
      let warn = lastWarning.withLock { last in
        guard last.map({ now - $0 > .seconds(10) }) ?? true else { return false }
        last = now
        return true
      }
      if warn {
        logger.warning(
          "the rate-limit service did not answer; sending without its decision", metadata: ["error": "\(error)"])
      }
      return nil
    }
  }

  /// Descriptor values the service accepts (a provider name or domain always is).
  static func usable(_ value: String) -> Bool {
    !value.isEmpty && value.utf8.count <= 128 && value != "*"
      && !value.contains { $0 == "=" || $0 == "," || $0.isWhitespace }
  }
}
