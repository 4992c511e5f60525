import Foundation
import HeraldCore
import NIOCore

/// The RFC 5322 text of a message, dot-stuffed and ended with `CRLF.CRLF` for DATA.
enum MIMEMessage {
  static func render(_ message: OutgoingMessage, from: String, heloName: String) -> ByteBuffer {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
    let date = formatter.string(from: Date())
    let isHTML = message.body.prefix(200).lowercased().contains("<html") || message.body.hasPrefix("<!")
    var headers = [
      "From: <\(from)>",
      "To: <\(message.recipient)>",
      "Subject: \(encodedWord(message.subject))",
      "Date: \(date)",
      "Message-ID: <\(message.id.lowercasedString)@\(heloName)>",
      "X-Herald-Idempotency-Key: \(message.idempotencyKey.filter { $0.isASCII && !$0.isNewline })",
      "MIME-Version: 1.0",
      "Content-Type: \(isHTML ? "text/html" : "text/plain"); charset=utf-8",
      "Content-Transfer-Encoding: base64",
    ]
    if let campaign = message.campaignID { headers.append("X-Herald-Campaign: \(campaign.lowercasedString)") }
    let encoded = Data(message.body.utf8).base64EncodedString(options: [
      .lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed,
    ])
    // Base64 lines never start with ".", so no dot-stuffing is needed in the body.
    var buffer = ByteBuffer()
    buffer.writeString(headers.joined(separator: "\r\n"))
    buffer.writeString("\r\n\r\n")
    buffer.writeString(encoded)
    buffer.writeString("\r\n.\r\n")
    return buffer
  }

  /// RFC 2047 encoded word for a header value that is not plain ASCII.
  static func encodedWord(_ text: String) -> String {
    let single = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
    guard single.unicodeScalars.contains(where: { !$0.isASCII }) else { return single }
    return "=?UTF-8?B?\(Data(single.utf8).base64EncodedString())?="
  }
}
