import Foundation

/// A message as a provider sends it.
package struct OutgoingMessage: Sendable, Equatable {
  package var id: UUID
  package var idempotencyKey: String
  package var channel: String
  package var recipient: String
  package var subject: String
  package var body: String
  package var campaignID: UUID?

  package init(
    id: UUID, idempotencyKey: String, channel: String, recipient: String, subject: String, body: String,
    campaignID: UUID? = nil
  ) {
    self.id = id
    self.idempotencyKey = idempotencyKey
    self.channel = channel
    self.recipient = recipient
    self.subject = subject
    self.body = body
    self.campaignID = campaignID
  }

  /// The part after the last `@` of an e-mail address (lower-cased), or the country prefix of a
  /// phone number's first digits; the rate limits' recipient-domain layer.
  package var recipientDomain: String {
    if let at = recipient.lastIndex(of: "@") { return recipient[recipient.index(after: at)...].lowercased() }
    return String(recipient.prefix(3))
  }
}

/// What a provider said about one send.
package enum SendFailure: Error, Sendable, Equatable, CustomStringConvertible {
  /// Worth retrying, here or at the next provider (4xx SMTP, HTTP 5xx, timeouts, refused
  /// connections). `retryAfter` is the provider's own throttle hint.
  case temporary(String, retryAfter: Duration? = nil)
  /// The provider refused the message for good (5xx SMTP, HTTP 4xx); neither retried nor failed over.
  case permanent(String)
  /// The provider refused the recipient for good (SMTP 5xx to RCPT): a hard bounce.
  case recipientRejected(String)
  /// Cut off after the provider may have accepted the message (connection lost after the data
  /// went out): not retried unless configured, counted as ambiguous.
  case ambiguous(String)

  package var description: String {
    switch self {
    case .temporary(let text, _), .permanent(let text), .recipientRejected(let text), .ambiguous(let text): text
    }
  }

  /// Whether the failure says something about the provider's health (counted by its breaker).
  package var countsAgainstProvider: Bool {
    switch self {
    case .temporary, .ambiguous: true
    case .permanent, .recipientRejected: false
    }
  }
}

/// One configured way of sending a channel's messages.
package protocol DeliveryProvider: Sendable {
  /// Sends one message; returns the provider's message id when it gives one.
  func send(_ message: OutgoingMessage) async throws(SendFailure) -> String?
  /// Closes pooled connections.
  func shutdown() async
}
