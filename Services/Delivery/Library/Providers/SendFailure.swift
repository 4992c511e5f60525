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
