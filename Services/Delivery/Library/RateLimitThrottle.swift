import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Synchronization

/// Asks the rate-limit service before sends (SPEC §3/§4): one call for many sends (a worker's
/// whole batch), with a check per descriptor of each: `provider=<name>`, `domain=<recipient
/// domain>` and, when the provider has one, `identity=<sending identity>`. An over-limit answer
/// delays its message by the longest retry-after of its checks; a service that does not answer
/// lets the sends go (and says so in the log), and is not asked again for `refresh`, so that
/// sends do not each wait for its deadline.
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

  package func delays(_ queries: [ThrottleQuery]) async -> [Duration?] {
    var answers = [Duration?](repeating: nil, count: queries.count)
    let now = ContinuousClock.now
    if let failed = failedAt.withLock({ $0 }), now - failed < refresh { return answers }
    let keys = await limitedKeys()
    // One check per limited descriptor of each query, all in one call; `asked[i]` is the query
    // check i is for.
    var request = Herald_Ratelimit_V1_ShouldRateLimitRequest()
    var asked: [Int] = []
    for (index, query) in queries.enumerated() {
      for (key, value) in [("provider", query.provider), ("domain", query.recipientDomain), ("identity", query.sendingIdentity ?? "")]
      where Self.usable(value) && keys.map({ $0.contains(key) }) ?? true {
        var check = Herald_Ratelimit_V1_RateLimitCheck()
        var descriptor = Herald_Ratelimit_V1_Descriptor()
        descriptor.key = key
        descriptor.value = value
        check.descriptors = [descriptor]
        request.checks.append(check)
        asked.append(index)
      }
    }
    guard !request.checks.isEmpty else { return answers }
    do {
      let response = try await client.shouldRateLimit(request, options: options)
      failedAt.withLock { $0 = nil }
      guard response.overallCode == .overLimit else { return answers }
      // An over-limit answer delays its query by the longest retry-after among its checks.
      for (status, index) in zip(response.statuses, asked) where status.code == .overLimit {
        let wait = Duration.milliseconds(max(status.retryAfterMs, 10))
        answers[index] = max(answers[index] ?? wait, wait)
      }
      return answers
    } catch {
      let first = failedAt.withLock { failed in
        defer { failed = .now }
        return failed == nil
      }
      logger.log(
        level: first ? .warning : .debug,
        "the rate-limit service did not answer; sending without its decisions for a while",
        metadata: ["error": "\(error.logDescription)", "retry_in": "\(refresh)"])
      return answers
    }
  }

  /// Descriptor values the service accepts (a provider name or domain always is).
  static func usable(_ value: String) -> Bool {
    !value.isEmpty && value.utf8.count <= 128 && value != "*"
      && !value.contains { $0 == "=" || $0 == "," || $0.isWhitespace }
  }
}
