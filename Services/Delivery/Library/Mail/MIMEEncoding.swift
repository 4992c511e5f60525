import Foundation

/// The encodings of RFC 2045 and RFC 2047 that a message's parts and headers need, and the
/// folding of long header lines (RFC 5322 §2.2.3). Lines end in CRLF.
package enum MIMEEncoding {
  /// Whether quoted-printable suits `text` (mostly ASCII: at most one byte in six needs escaping)
  /// better than base64.
  static func prefersQuotedPrintable(_ text: String) -> Bool {
    var escaped = 0
    var total = 0
    for byte in text.utf8 {
      total += 1
      if byte >= 0x80 || (byte < 0x20 && byte != 0x0A && byte != 0x0D && byte != 0x09) { escaped += 1 }
    }
    return escaped * 6 <= total
  }

  private static let hex = Array("0123456789ABCDEF".utf8)

  /// Quoted-printable (RFC 2045 §6.7) with CRLF hard line breaks (from LF, CR or CRLF), soft breaks
  /// keeping every line within 76 characters, trailing white space encoded, and a "." that would
  /// start a line encoded as `=2E` (so the part needs no SMTP dot-stuffing).
  package static func quotedPrintable(_ text: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(text.utf8.count + text.utf8.count / 8)
    var lineLength = 0
    let bytes = Array(text.utf8)
    var index = 0
    /// Writes one byte, as itself or as `=XX` (three characters), after a soft break when the
    /// line has no room left for it and the break's "=".
    func write(_ byte: UInt8, escaped: Bool) {
      var escaped = escaped
      if lineLength + (escaped ? 3 : 1) > 75 {
        out.append(UInt8(ascii: "="))
        out.append(0x0D)
        out.append(0x0A)
        lineLength = 0
      }
      if lineLength == 0, byte == UInt8(ascii: ".") { escaped = true }
      if escaped {
        out.append(UInt8(ascii: "="))
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0F)])
        lineLength += 3
      } else {
        out.append(byte)
        lineLength += 1
      }
    }
    while index < bytes.count {
      let byte = bytes[index]
      if byte == 0x0D || byte == 0x0A {
        out.append(0x0D)
        out.append(0x0A)
        lineLength = 0
        index += (byte == 0x0D && index + 1 < bytes.count && bytes[index + 1] == 0x0A) ? 2 : 1
        continue
      }
      let atLineEnd = index + 1 == bytes.count || bytes[index + 1] == 0x0D || bytes[index + 1] == 0x0A
      write(
        byte,
        escaped: byte == UInt8(ascii: "=") || byte >= 0x7F || (byte < 0x20 && byte != 0x09)
          || ((byte == 0x20 || byte == 0x09) && atLineEnd))
      index += 1
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Base64 in lines of 76 characters, CRLF-separated.
  static func base64(_ data: Data) -> String {
    data.base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
  }

  /// A header field `name: value` folded to lines of at most 78 characters at white space (a word
  /// longer than a line stays whole, up to RFC 5322's 998). Text that is not ASCII becomes RFC 2047
  /// encoded words (`=?UTF-8?B?…?=`, each at most 75 characters, split between characters) unless
  /// `encoding` is false (an address, which RFC 6532 writes in UTF-8).
  static func header(_ name: String, _ value: String, encoding: Bool = true) -> String {
    let single = value.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\r", with: " ")
      .replacingOccurrences(of: "\n", with: " ")
    let words: [String] =
      !encoding || single.unicodeScalars.allSatisfy(\.isASCII)
      ? single.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
      : encodedWords(single, firstLineRoom: 76 - name.count - 2)
    return fold(name: name, words: words)
  }

  /// Encoded words of `text`, split between Unicode scalars (never inside one's UTF-8 bytes) so
  /// that each is at most 75 characters; the first leaves room for the header's name, so that a
  /// line holding encoded words stays within RFC 2047's 76.
  static func encodedWords(_ text: String, firstLineRoom: Int) -> [String] {
    // "=?UTF-8?B?" + "?=" is 12 characters; base64 of n bytes is 4·ceil(n/3).
    func fits(_ bytes: Int, _ room: Int) -> Bool { 12 + 4 * ((bytes + 2) / 3) <= room }
    var words: [String] = []
    var current: [UInt8] = []
    for scalar in text.unicodeScalars {
      let bytes = Array(String(scalar).utf8)
      let room = words.isEmpty ? max(firstLineRoom, 24) : 75
      if !current.isEmpty, !fits(current.count + bytes.count, room) {
        words.append("=?UTF-8?B?\(Data(current).base64EncodedString())?=")
        current = []
      }
      current += bytes
    }
    if !current.isEmpty || words.isEmpty { words.append("=?UTF-8?B?\(Data(current).base64EncodedString())?=") }
    return words
  }

  /// `name: w1 w2 …`, breaking before a word that would pass 78 characters.
  private static func fold(name: String, words: [String]) -> String {
    var out = name + ":"
    var lineLength = out.count
    for word in words {
      if lineLength + 1 + word.count > 78, lineLength > name.count + 1 {
        out += "\r\n " + word
        lineLength = 1 + word.count
      } else {
        out += " " + word
        lineLength += 1 + word.count
      }
    }
    return out
  }

  /// An address with a display name: `"Name" <address>` (quoted when it holds specials), or
  /// encoded words when the name is not ASCII (the first fitting the `field` header's first line);
  /// the address alone when the name is empty.
  static func mailbox(name: String, address: String, field: String = "From") -> String {
    guard !name.isEmpty else { return "<\(address)>" }
    if name.unicodeScalars.allSatisfy(\.isASCII) {
      let escaped = name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      return "\"\(escaped)\" <\(address)>"
    }
    return encodedWords(name, firstLineRoom: 76 - field.count - 2).joined(separator: " ") + " <\(address)>"
  }
}
