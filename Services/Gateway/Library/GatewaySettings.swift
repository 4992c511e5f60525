import HeraldCore

/// The gateway's own settings (the common ones, with the back-ends' addresses, are in
/// `ServiceConfiguration`).
package struct GatewaySettings: Sendable {
  /// How long `/system/status` waits for each service.
  package var statusTimeout: Duration = .seconds(2)
  /// An admin key stored (hashed) at start; without one, a key is generated once and printed.
  package var adminKey: Secret<String>?
  /// Requests a minute each client address may make to the public routes (webhooks,
  /// unsubscribe links), in bursts of half as many.
  package var publicRatePerMinute = 600
  /// Where the public routes are reached from outside (HERALD_PUBLIC_URL, without a trailing
  /// slash): the URL an SMS provider signs in X-Twilio-Signature begins with it. nil: the
  /// request's scheme (X-Forwarded-Proto, else http) and Host.
  package var publicURL: String?

  package init(statusTimeout: Duration = .seconds(2), adminKey: String? = nil, publicRatePerMinute: Int = 600) {
    self.statusTimeout = statusTimeout
    self.adminKey = adminKey.map(Secret.init)
    self.publicRatePerMinute = publicRatePerMinute
  }

  package static func load(_ settings: Settings) throws -> GatewaySettings {
    let adminKey = settings.optionalString("HERALD_ADMIN_API_KEY")
    if let adminKey, adminKey.count < 20 || adminKey.count > 200 || adminKey.contains(where: \.isWhitespace) {
      throw ConfigurationError.malformed(
        variable: "HERALD_ADMIN_API_KEY", value: "<redacted>", expected: "20 to 200 characters without spaces")
    }
    var result = GatewaySettings(
      statusTimeout: try settings.duration("HERALD_STATUS_TIMEOUT", default: .seconds(2)), adminKey: adminKey,
      publicRatePerMinute: try settings.int("HERALD_GATEWAY_PUBLIC_RATE", default: 600, range: 1...1_000_000))
    result.publicURL = try settings.publicURL()
    return result
  }
}
