import NIOCore

/// How an SMTP provider connects: from `SmtpSettings`.
package struct SMTPSettings: Sendable, Equatable {
  package enum TLS: Sendable, Equatable { case ifOffered, required, none }

  package var host: String
  package var port: Int
  package var username: String?
  package var password: String?
  package var tls: TLS
  package var fromAddress: String
  /// The From header's display name; empty: the address alone.
  package var fromName: String
  package var replyTo: String?
  /// Where mail reaches Herald's inbound route: Reply-To and the List-Unsubscribe mailto: carry
  /// signed addresses on it (`AddressToken`).
  package var inboundDomain: String?
  package var heloName: String
  package var maxConnections: Int
  package var trustedCAPEM: String?
  package var timeout: TimeAmount

  package init(
    host: String, port: Int, username: String? = nil, password: String? = nil, tls: TLS = .ifOffered,
    fromAddress: String, fromName: String = "", replyTo: String? = nil, heloName: String = "localhost", maxConnections: Int = 4,
    trustedCAPEM: String? = nil, inboundDomain: String? = nil,
    timeout: TimeAmount = .seconds(30)
  ) {
    self.inboundDomain = inboundDomain
    self.host = host
    self.port = port
    self.username = username
    self.password = password
    self.tls = tls
    self.fromAddress = fromAddress
    self.fromName = fromName
    self.replyTo = replyTo
    self.heloName = heloName
    self.maxConnections = maxConnections
    self.trustedCAPEM = trustedCAPEM
    self.timeout = timeout
  }
}
