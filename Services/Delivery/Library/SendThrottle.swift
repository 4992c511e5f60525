/// One send to decide on: the provider it would go through and what limits may be kept for.
package struct ThrottleQuery: Sendable, Hashable {
  package var provider: String
  package var sendingIdentity: String?
  package var recipientDomain: String

  package init(provider: String, sendingIdentity: String?, recipientDomain: String) {
    self.provider = provider
    self.sendingIdentity = sendingIdentity
    self.recipientDomain = recipientDomain
  }
}

/// Asked before sends (SPEC §3/§4): for each query, `nil` lets it go now; a duration delays the
/// message (it is never failed for it). A worker asks once for a whole claimed batch (each
/// message's first provider, when its breaker is closed), and once per message otherwise. The
/// rate-limit service plugs in here (`RateLimitThrottle`); `Unthrottled` is the default when no
/// rate limits are configured.
package protocol SendThrottle: Sendable {
  /// One answer per query, in order. A query counts as a send taken from the limits whether or
  /// not the message is then sent (as a send that fails does).
  func delays(_ queries: [ThrottleQuery]) async -> [Duration?]
}

extension SendThrottle {
  package func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration? {
    await delays([ThrottleQuery(provider: provider, sendingIdentity: sendingIdentity, recipientDomain: recipientDomain)]).first ?? nil
  }
}

/// No rate limits configured.
package struct Unthrottled: SendThrottle {
  package init() {}
  package func delays(_ queries: [ThrottleQuery]) async -> [Duration?] { Array(repeating: nil, count: queries.count) }
}
