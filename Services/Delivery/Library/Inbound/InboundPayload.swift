import Crypto
import Foundation
import GRPCCore
import HeraldCore
import HeraldServerKit

/// An inbound SMS or e-mail as a provider posts it (SPEC §11), read from the shapes the common
/// APIs use:
///
/// - SMS: a form (`application/x-www-form-urlencoded`) with `From`, `To`, `Body` and
///   `MessageSid`, as the common SMS APIs post it; or JSON with the same names (or `from`, `to`,
///   `body` or `text`, `message_id` or `id`).
/// - E-mail: the inbound-parse shape, as a form or JSON: `from`, `to`, `subject`, `text`, `html`,
///   `headers` (the raw header block, or a JSON object of name and value), and optionally
///   `message_id` when the headers hold no Message-ID.
///
/// Every problem names its field; nothing is stored for a malformed body.
package struct InboundPayload: Sendable, Equatable {
  package var channel: String
  /// The provider's id of the message: MessageSid, or the e-mail's Message-ID.
  package var providerMessageID: String
  /// An E.164 number, or a lower-cased e-mail address.
  package var from: String
  package var to: String
  package var subject = ""
  package var text: String
  /// An e-mail's headers, in order, unfolded.
  package var headers: [[String]] = []
  /// The ids of Herald's messages an e-mail's In-Reply-To and References name, the most recent
  /// first.
  package var references: [UUID] = []
  /// Why an e-mail is an automatic message that must not be answered (RFC 3834); nil for a
  /// person's.
  package var automatic: String?
  /// Every address an e-mail was sent to (To and Cc), lower-cased: one may carry a signed token
  /// (`AddressToken`).
  package var recipients: [String] = []

  static func problem(_ field: String, _ message: String) -> RPCError { .field(field, .invalidArgument, message) }

  /// The media type without its parameters, lower-cased.
  static func mediaType(_ contentType: String) -> String {
    (contentType.split(separator: ";").first.map(String.init) ?? "").trimmingCharacters(in: .whitespaces).lowercased()
  }

  /// A form's fields in order; nil when it is not well-formed.
  static func formFields(_ body: Data) -> [(String, String)]? {
    guard let text = String(data: body, encoding: .utf8) else { return nil }
    var fields: [(String, String)] = []
    for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      func decode(_ part: Substring) -> String? { part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
      guard let name = decode(parts[0]), let value = parts.count == 2 ? decode(parts[1]) : "" else { return nil }
      fields.append((name, value))
    }
    return fields
  }

  /// The body's fields, from a form or a JSON object of strings (other values are left out).
  static func fields(_ body: Data, contentType: String) throws(RPCError) -> [String: String] {
    switch mediaType(contentType) {
    case "application/x-www-form-urlencoded":
      guard let fields = formFields(body) else {
        throw problem("body", "the form is not well-formed (application/x-www-form-urlencoded, UTF-8)")
      }
      return Dictionary(fields, uniquingKeysWith: { first, _ in first })
    case "application/json":
      guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
        throw problem("body", "the body is not a JSON object")
      }
      var fields: [String: String] = [:]
      for (name, value) in object {
        if let text = value as? String {
          fields[name] = text
        } else if name == "headers", let headers = value as? [String: Any] {
          // Headers given as an object: written as a header block.
          fields[name] = headers.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
        }
      }
      return fields
    case "multipart/form-data":
      // The inbound-parse services' usual shape (one part per field; files are left out).
      guard let fields = multipartFields(body, contentType: contentType) else {
        throw problem(
          "body", "the multipart/form-data body is not well-formed (a boundary parameter and parts named by Content-Disposition)")
      }
      return fields
    default:
      throw problem(
        "Content-Type",
        "the body must be application/x-www-form-urlencoded, multipart/form-data or application/json, not '\(contentType)'")
    }
  }

  /// The text fields of a multipart/form-data body (RFC 7578), by name; parts with a filename
  /// (attachments) are left out. nil when it is not well-formed.
  static func multipartFields(_ body: Data, contentType: String) -> [String: String]? {
    guard
      let boundary = contentType.split(separator: ";").dropFirst().lazy.map({ $0.trimmingCharacters(in: .whitespaces) })
        .first(where: { $0.lowercased().hasPrefix("boundary=") })?.dropFirst("boundary=".count)
        .trimmingCharacters(in: CharacterSet(charactersIn: "\"")), !boundary.isEmpty
    else { return nil }
    let delimiter = Data("--\(boundary)".utf8)
    var fields: [String: String] = [:]
    var rest = body[...]
    guard let first = rest.range(of: delimiter) else { return nil }
    rest = rest[first.upperBound...]
    while !rest.starts(with: Data("--".utf8)) {
      guard let next = rest.range(of: delimiter) else { return nil }
      // The part: CRLF, headers, a blank line, the content, then the CRLF that belongs to the delimiter.
      var part = rest[..<next.lowerBound]
      rest = rest[next.upperBound...]
      if part.starts(with: Data("\r\n".utf8)) { part = part.dropFirst(2) }
      if part.suffix(2) == Data("\r\n".utf8) { part = part.dropLast(2) }
      guard let blank = part.range(of: Data("\r\n\r\n".utf8)) else { return nil }
      let headers = String(decoding: part[..<blank.lowerBound], as: UTF8.self)
      guard
        let disposition = headers.components(separatedBy: "\r\n").first(where: { $0.lowercased().hasPrefix("content-disposition:") })
      else { continue }
      let parameters = disposition.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) }
      func parameter(_ name: String) -> String? {
        parameters.first { $0.lowercased().hasPrefix("\(name)=") }.map {
          String($0.dropFirst(name.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
      }
      guard let name = parameter("name"), parameter("filename") == nil, fields[name] == nil else { continue }
      fields[name] = String(decoding: part[blank.upperBound...], as: UTF8.self)
    }
    return fields
  }

  static func text(_ fields: [String: String], _ names: [String]) -> String? {
    for name in names { if let value = fields[name] { return value } }
    return nil
  }

  /// An inbound SMS.
  package static func sms(_ body: Data, contentType: String) throws(RPCError) -> InboundPayload {
    let fields = try fields(body, contentType: contentType)
    guard let id = text(fields, ["MessageSid", "SmsMessageSid", "SmsSid", "message_id", "id"]), !id.isEmpty else {
      throw problem("MessageSid", "MessageSid is missing: the provider's id of the message makes a retry a duplicate")
    }
    guard let from = text(fields, ["From", "from"])?.trimmingCharacters(in: .whitespaces), !from.isEmpty else {
      throw problem("From", "From is missing")
    }
    guard from.wholeMatch(of: /\+[1-9][0-9]{6,14}/) != nil else {
      throw problem("From", "From '\(from)' is not an E.164 number such as +14155550123")
    }
    guard let to = text(fields, ["To", "to"])?.trimmingCharacters(in: .whitespaces), !to.isEmpty else {
      throw problem("To", "To is missing")
    }
    guard to.count <= 64, !to.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
      throw problem("To", "To must be a phone number, short code or sender name of at most 64 characters on one line")
    }
    guard let message = text(fields, ["Body", "body", "text"]) else { throw problem("Body", "Body is missing") }
    let payload = InboundPayload(channel: "sms", providerMessageID: id, from: from, to: to, text: message)
    try payload.checkNUL()
    return payload
  }

  /// An inbound e-mail.
  package static func email(_ body: Data, contentType: String) throws(RPCError) -> InboundPayload {
    let fields = try fields(body, contentType: contentType)
    let headers = parseHeaders(fields["headers"] ?? "")
    func header(_ name: String) -> String? { headers.last { $0[0].caseInsensitiveCompare(name) == .orderedSame }?[1] }
    guard let fromField = text(fields, ["from", "From"]) ?? header("From"), !fromField.isEmpty else {
      throw problem("from", "from is missing")
    }
    guard let from = address(in: fromField) else { throw problem("from", "from '\(fromField)' holds no e-mail address") }
    guard let toField = text(fields, ["to", "To"]) ?? header("To"), let to = address(in: toField) else {
      throw problem("to", "to is missing or holds no e-mail address")
    }
    guard let id = (header("Message-ID") ?? text(fields, ["message_id", "Message-Id"]))?.trimmingCharacters(in: .whitespaces),
      !id.isEmpty
    else {
      throw problem("headers", "the message has no Message-ID: give it in headers, or as message_id")
    }
    // The text part, else the HTML part's text.
    let plain = text(fields, ["text", "body-plain"]) ?? ""
    let html = text(fields, ["html", "body-html"]) ?? ""
    var payload = InboundPayload(
      channel: "email", providerMessageID: id, from: from, to: to,
      subject: text(fields, ["subject", "Subject"]) ?? header("Subject") ?? "",
      text: plain.isEmpty && !html.isEmpty ? HTMLText.text(fromHTML: html) : plain, headers: headers)
    // In-Reply-To first (the message answered), then References from the newest.
    let named = messageIDs(in: header("In-Reply-To") ?? "") + messageIDs(in: header("References") ?? "").reversed()
    var seen = Set<UUID>()
    payload.references = named.filter { seen.insert($0).inserted }
    payload.automatic = automatic(headers: headers, from: from)
    payload.recipients = [toField, text(fields, ["cc", "Cc"]) ?? header("Cc") ?? ""]
      .flatMap { $0.split(separator: ",") }.compactMap { address(in: String($0)) }
    try payload.checkNUL()
    return payload
  }

  func checkNUL() throws(RPCError) {
    let headerText = headers.flatMap { $0 }
    for (field, value) in [("from", from), ("to", to), ("subject", subject), ("text", text), ("message_id", providerMessageID)]
      + headerText.map({ ("headers", $0) })
    where value.utf8.contains(0) {
      throw Self.problem(field, StringFieldCheck.holdsNUL(field))
    }
  }

  /// A header block's fields in order, continuation lines unfolded.
  static func parseHeaders(_ block: String) -> [[String]] {
    var headers: [[String]] = []
    for line in block.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
      if let first = line.first, first == " " || first == "\t", !headers.isEmpty {
        headers[headers.count - 1][1] += " " + line.trimmingCharacters(in: .whitespaces)
      } else if let colon = line.firstIndex(of: ":") {
        headers.append([
          String(line[..<colon]).trimmingCharacters(in: .whitespaces),
          String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces),
        ])
      }
    }
    return headers
  }

  /// The address of "Name <a@b.example>" or "a@b.example", lower-cased.
  static func address(in field: String) -> String? {
    var candidate = field
    if let open = field.lastIndex(of: "<"), let close = field[open...].firstIndex(of: ">") {
      candidate = String(field[field.index(after: open)..<close])
    }
    candidate = candidate.trimmingCharacters(in: .whitespaces).lowercased()
    guard let at = candidate.lastIndex(of: "@"), at != candidate.startIndex, candidate.index(after: at) != candidate.endIndex,
      !candidate.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" })
    else { return nil }
    return candidate
  }

  /// The ids of Herald's messages among `<id@domain>` Message-IDs (Herald writes each message's
  /// id on the left).
  static func messageIDs(in field: String) -> [UUID] {
    field.matches(of: /<([^<>@\s]+)@[^<>\s]+>/).compactMap { UUID(text: String($0.output.1)) }
  }

  static let automaticSenders = ["mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply"]

  /// Why a message must not be answered automatically (RFC 3834 §2; common practice for lists and
  /// system senders), or nil.
  static func automatic(headers: [[String]], from: String) -> String? {
    for header in headers {
      let name = header[0].lowercased()
      let value = header[1].trimmingCharacters(in: .whitespaces)
      switch name {
      case "auto-submitted":
        let token = value.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        if token != "no" { return "Auto-Submitted: \(value)" }
      case "precedence" where ["bulk", "list", "junk", "auto_reply"].contains(value.lowercased()):
        return "Precedence: \(value)"
      case "x-auto-response-suppress"
      where value.split(separator: ",").contains(where: {
        ["all", "autoreply", "oof"].contains($0.trimmingCharacters(in: .whitespaces).lowercased())
      }):
        // The sender asks not to be answered automatically (Microsoft's header).
        return "X-Auto-Response-Suppress: \(value)"
      case "content-type" where value.lowercased().hasPrefix("multipart/report"):
        // A delivery or read report (RFC 6522).
        return "a report (\(value.split(separator: ";")[0]))"
      case "return-path" where value == "<>":
        return "an empty return path"
      case "x-autoreply", "x-autorespond":
        return "\(header[0]): \(value)"
      default:
        if name.hasPrefix("list-") { return "a \(header[0]) header (a mailing list's message)" }
      }
    }
    let local = from.split(separator: "@").first.map(String.init) ?? ""
    if automaticSenders.contains(local) { return "the sender \(from) is a system address" }
    return nil
  }

  /// An `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with `key`, over `url` followed by each
  /// form field sorted by name (byte order) as name and value (none for a JSON body).
  package static func twilioSignature(key: String, url: String, fields: [(String, String)]) -> String {
    var signed = url
    let sorted = fields.sorted { a, b in
      a.0 == b.0 ? Array(a.1.utf8).lexicographicallyPrecedes(b.1.utf8) : Array(a.0.utf8).lexicographicallyPrecedes(b.0.utf8)
    }
    for (name, value) in sorted { signed += name + value }
    let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(signed.utf8), using: SymmetricKey(data: Data(key.utf8)))
    return Data(mac).base64EncodedString()
  }

  /// Checks an `X-Twilio-Signature` (see `twilioSignature`); a JSON body is covered by the URL's
  /// `bodySHA256` parameter (hex SHA-256 of the body). Compared in constant time.
  package static func twilioSignatureHolds(_ signature: String, key: String, url: String, body: Data, contentType: String) -> Bool {
    var fields: [(String, String)] = []
    if mediaType(contentType) == "application/x-www-form-urlencoded" {
      guard let form = formFields(body) else { return false }
      fields = form
    } else {
      guard let given = URLComponents(string: url)?.queryItems?.first(where: { $0.name == "bodySHA256" })?.value else {
        return false
      }
      let digest = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
      guard ConstantTime.equal(digest.utf8, given.lowercased().utf8) else { return false }
    }
    return ConstantTime.equal(twilioSignature(key: key, url: url, fields: fields).utf8, signature.utf8)
  }
}
