import Foundation
import HeraldCore
import NIOCore

/// The RFC 5322 text of an e-mail, ended with `CRLF.CRLF` for DATA: an HTML message as
/// `multipart/alternative` (a text/plain part, then text/html), a text message as one text/plain
/// part; each part quoted-printable when mostly ASCII, else base64 (neither ever starts a line
/// with "." so no dot-stuffing is needed); headers folded at 78 characters, with RFC 2047 words
/// where they are not ASCII; DKIM-signed with the keys of the From domain.
package struct MIMEMessage {
  /// Who the message is from and the names it uses.
  package struct Sender: Sendable {
    package var address: String
    package var name: String
    package var replyTo: String?
    /// Campaign mail: the address whose mail unsubscribes the recipient (List-Unsubscribe's
    /// mailto:), beside the one-click URL.
    package var unsubscribeMailbox: String?

    package init(address: String, name: String = "", replyTo: String? = nil) {
      self.address = address
      self.name = name
      self.replyTo = replyTo
    }

    /// The From address's domain, lower-cased: the Message-ID's right side and the DKIM `d=`.
    package var domain: String {
      MailAddress.domain(of: address) ?? "localhost"
    }
  }

  var headers: [(name: String, value: String)] = []
  var body: [UInt8] = []

  /// Renders `message` from `sender`, signed with `keys` (none: unsigned); `boundary` and `date` are
  /// given by tests.
  package static func render(
    _ message: OutgoingMessage, sender: Sender, keys: [DKIMKey] = [], signatureLifetime: Duration? = nil, date: Date = Date(),
    boundary: String? = nil
  ) throws -> ByteBuffer {
    var mime = MIMEMessage()
    mime.add("From", MIMEEncoding.mailbox(name: sender.name, address: sender.address))
    if let replyTo = sender.replyTo { mime.add("Reply-To", "<\(replyTo)>") }
    // An address that is not ASCII stays UTF-8 (RFC 6532: it goes only with SMTPUTF8).
    mime.add("To", "<\(message.recipient)>", encoding: false)
    mime.add("Subject", message.subject)
    mime.add("Date", RFC5322Date.string(date))
    // The message's id on the sending domain: the same for every copy of the message (a resend
    // after an unclear outcome is recognisably the same message).
    mime.add("Message-ID", "<\(message.id.lowercasedString)@\(sender.domain)>")
    mime.add("MIME-Version", "1.0")
    mime.add("X-Herald-Idempotency-Key", message.idempotencyKey.filter { $0.isASCII && !$0.isNewline })
    if let campaign = message.campaignID { mime.add("X-Herald-Campaign", campaign.lowercasedString) }
    if let answered = message.inReplyTo {
      // An answer threads under the message it answers (RFC 5322 §3.6.4).
      mime.add("In-Reply-To", answered, encoding: false)
      mime.add("References", answered, encoding: false)
    }
    // RFC 3834: an automatic answer says so, so that no other automaton answers it in turn.
    if message.autoSubmitted { mime.add("Auto-Submitted", "auto-replied") }
    if let unsubscribe = message.listUnsubscribeURL {
      // RFC 8058 one-click: a POST of "List-Unsubscribe=One-Click" to the URL unsubscribes.
      // RFC 2369: the mailto: too, for clients that unsubscribe by mail.
      mime.add("List-Unsubscribe", "<\(unsubscribe)>" + (sender.unsubscribeMailbox.map { ", <mailto:\($0)>" } ?? ""))
      mime.add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    }

    if message.format == "html" {
      let boundary = boundary ?? "=_herald_\(message.id.lowercasedString)"
      let text = message.textBody ?? HTMLText.text(fromHTML: message.body)
      mime.add("Content-Type", "multipart/alternative; boundary=\"\(boundary)\"")
      var body = "This is a multi-part message in MIME format.\r\n"
      for (type, content) in [("text/plain", text), ("text/html", message.body)] {
        let (encoding, encoded) = Self.encode(content)
        body += "\r\n--\(boundary)\r\nContent-Type: \(type); charset=utf-8\r\nContent-Transfer-Encoding: \(encoding)\r\n\r\n"
        // The line break before the next boundary belongs to the boundary, not to the part.
        body += encoded
      }
      body += "\r\n--\(boundary)--\r\n"
      mime.body = Array(body.utf8)
    } else {
      let (encoding, encoded) = Self.encode(message.body)
      mime.add("Content-Type", "text/plain; charset=utf-8")
      mime.add("Content-Transfer-Encoding", encoding)
      mime.body = Array((encoded + "\r\n").utf8)
    }

    let signatures = try DKIMSigner.signatures(
      headers: mime.headers, body: mime.body, keys: keys, time: date, lifetime: signatureLifetime)
    var buffer = ByteBuffer()
    buffer.reserveCapacity(mime.body.count + 2048)
    for signature in signatures {
      buffer.writeString(signature)
      buffer.writeString("\r\n")
    }
    for header in mime.headers {
      buffer.writeString(header.name)
      buffer.writeString(":")
      buffer.writeString(header.value)
      buffer.writeString("\r\n")
    }
    buffer.writeString("\r\n")
    buffer.writeBytes(mime.body)
    buffer.writeString(".\r\n")
    return buffer
  }

  /// A header, folded (and encoded where not ASCII); kept as its name and the text after the colon.
  mutating func add(_ name: String, _ value: String, encoding: Bool = true) {
    let line = MIMEEncoding.header(name, value, encoding: encoding)
    headers.append((name, String(line.dropFirst(name.count + 1))))
  }

  static func encode(_ text: String) -> (encoding: String, text: String) {
    MIMEEncoding.prefersQuotedPrintable(text)
      ? ("quoted-printable", MIMEEncoding.quotedPrintable(text))
      : ("base64", MIMEEncoding.base64(Data(text.utf8)))
  }
}

/// RFC 5322 dates (`Sat, 05 Dec 2026 01:02:03 +0000`), in UTC, from the clock's fields: no
/// formatter object per message, and safe from any thread.
enum RFC5322Date {
  static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
  static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

  static func string(_ date: Date) -> String {
    var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
    var parts = tm()
    gmtime_r(&seconds, &parts)
    let day = days[Int(parts.tm_wday)]
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return
      "\(day), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
  }
}
