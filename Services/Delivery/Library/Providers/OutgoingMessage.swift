import Foundation

/// A message as a provider sends it.
package struct OutgoingMessage: Sendable, Equatable {
  package var id: UUID
  package var idempotencyKey: String
  package var channel: String
  package var recipient: String
  package var subject: String
  package var body: String
  /// "text" or "html": how `body` is written.
  package var format: String
  /// An HTML e-mail's text/plain alternative, when the sender gave one.
  package var textBody: String?
  /// The one-click unsubscribe URL of an e-mail (List-Unsubscribe).
  package var listUnsubscribeURL: String?
  package var campaignID: UUID?
  /// E-mail: the Message-ID it answers (In-Reply-To, References).
  package var inReplyTo: String?
  /// An automatic answer (Auto-Submitted: auto-replied).
  package var autoSubmitted = false
  /// Push and WhatsApp template messages: what they carry besides subject and body.
  package var payload: ChannelPayload?

  package init(
    id: UUID, idempotencyKey: String, channel: String, recipient: String, subject: String, body: String,
    format: String = "text", textBody: String? = nil, listUnsubscribeURL: String? = nil, campaignID: UUID? = nil,
    inReplyTo: String? = nil, autoSubmitted: Bool = false, payload: ChannelPayload? = nil
  ) {
    self.payload = payload
    self.inReplyTo = inReplyTo
    self.autoSubmitted = autoSubmitted
    self.id = id
    self.idempotencyKey = idempotencyKey
    self.channel = channel
    self.recipient = recipient
    self.subject = subject
    self.body = body
    self.format = format
    self.textBody = textBody
    self.listUnsubscribeURL = listUnsubscribeURL
    self.campaignID = campaignID
  }

  /// The part after the last `@` of an e-mail address (lower-cased), or the country prefix of a
  /// phone number's first digits; the rate limits' recipient-domain layer.
  package var recipientDomain: String {
    MailAddress.domain(of: recipient) ?? String(recipient.prefix(3))
  }
}
