import Foundation
import HeraldServerKit
import NIOCore

/// E-mail over SMTP. Keeps up to `maxConnections` sessions open and reuses them; a send that finds
/// its pooled connection closed by the server (idle timeout) retries once on a fresh one. Each
/// message is DKIM-signed with the keys the keyring holds for the From address's domain.
package final class SMTPProvider: DeliveryProvider {
  let settings: SMTPSettings
  let sender: MIMEMessage.Sender
  let dkim: DKIMKeyring
  /// Signs the Reply-To and List-Unsubscribe mailto: addresses on `settings.inboundDomain`.
  let addressKeys: [(id: String, key: Data)]
  private let pool: SMTPPool

  package init(settings: SMTPSettings, dkim: DKIMKeyring = DKIMKeyring(), addressKeys: [(id: String, key: Data)] = []) {
    self.settings = settings
    self.sender = MIMEMessage.Sender(address: settings.fromAddress, name: settings.fromName, replyTo: settings.replyTo)
    self.dkim = dkim
    self.addressKeys = addressKeys
    self.pool = SMTPPool(settings: settings)
  }

  /// The sender of `message`: with an inbound domain (and a key), its own signed Reply-To, and
  /// for campaign mail its List-Unsubscribe mailto: address.
  func sender(of message: OutgoingMessage) -> MIMEMessage.Sender {
    guard let domain = settings.inboundDomain,
      let replyTo = AddressToken(kind: .reply, message: message.id).address(domain: domain, keys: addressKeys)
    else { return sender }
    var sender = self.sender
    sender.replyTo = replyTo
    if message.listUnsubscribeURL != nil {
      sender.unsubscribeMailbox = AddressToken(kind: .unsubscribe, message: message.id).address(domain: domain, keys: addressKeys)
    }
    return sender
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    // The recipient's domain in A-labels (punycode), in the envelope and the To header alike.
    let recipient: MailAddress
    do {
      recipient = try MailAddress(message.recipient)
    } catch {
      // No server refused it: a failure, not a bounce (the guards count bounces).
      throw .permanent("the recipient's address cannot be sent to: \(error)")
    }
    var message = message
    message.recipient = recipient.wire
    // Rendered (and signed) before a connection is taken: a message that cannot be rendered fails
    // without anything sent.
    let content: ByteBuffer
    do {
      content = try MIMEMessage.render(
        message, sender: sender(of: message), keys: dkim.keys(for: sender.domain), signatureLifetime: dkim.signatureLifetime)
    } catch {
      throw .temporary("could not DKIM-sign the message: \(error)")
    }
    var attempt = 0
    while true {
      attempt += 1
      let (connection, reused) = try await pool.acquire()
      do {
        let reply = try await connection.send(message, to: recipient, content: content)
        await pool.release(connection)
        return Self.queueID(reply)
      } catch {
        await pool.release(connection)
        // A reused connection the server had already closed fails before anything was sent.
        if reused, attempt == 1, !connection.isOpen, case .temporary = error { continue }
        throw error
      }
    }
  }

  package func shutdown() async {
    await pool.closeAll()
  }

  /// "250 2.0.0 Ok: queued as 4F2A1C" → "4F2A1C"; otherwise the reply's text.
  static func queueID(_ reply: SMTPReply) -> String {
    let text = reply.text
    if let range = text.range(of: "queued as ", options: .caseInsensitive) {
      return String(text[range.upperBound...].prefix { !$0.isWhitespace })
    }
    return String(text.prefix(200))
  }
}
