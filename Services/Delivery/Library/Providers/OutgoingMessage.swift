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

  /// The rate limits' recipient-domain layer: the part after the last `@` of an e-mail address
  /// (lower-cased), a phone number's first digits (its country prefix), the same with `whatsapp:`
  /// before it for WhatsApp (kept apart from the number's texts), and `push:` and the platform
  /// for a push (a token says nothing more).
  package var recipientDomain: String {
    switch channel {
    case "push": "push:" + (payload?.push?.platform ?? "unknown")
    case "whatsapp": "whatsapp:" + recipient.prefix(3)
    default: MailAddress.domain(of: recipient) ?? String(recipient.prefix(3))
    }
  }
}
