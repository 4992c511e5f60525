/// Asked before each send (SPEC §3/§4): `nil` lets it go now; a duration delays the message (it is
/// never failed for it). The rate-limit service plugs in here (`RateLimitThrottle`); `Unthrottled`
/// is the default when no rate limits are configured.
package protocol SendThrottle: Sendable {
  func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration?
}

/// No rate limits configured.
package struct Unthrottled: SendThrottle {
  package init() {}
  package func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration? { nil }
}
