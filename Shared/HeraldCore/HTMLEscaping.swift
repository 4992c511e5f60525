extension String {
  /// The text with the five characters HTML gives meaning to (`< > & " '`) written as character
  /// references, as swift-mustache escapes them (compared as Characters, as it does): for values
  /// rendered into templates and for the pages the gateway writes.
  package var htmlEscaped: String {
    guard
      utf8.contains(where: {
        $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'")
      })
    else { return self }
    var escaped = ""
    escaped.reserveCapacity(utf8.count)
    for character in self {
      switch character {
      case "<": escaped += "&lt;"
      case ">": escaped += "&gt;"
      case "&": escaped += "&amp;"
      case "\"": escaped += "&quot;"
      case "'": escaped += "&#39;"
      default: escaped.append(character)
      }
    }
    return escaped
  }

  static let namedReferences: [String: String] = [
    "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{00A0}", "copy": "©", "reg": "®",
    "hellip": "…", "mdash": "—", "ndash": "–", "rsquo": "’", "lsquo": "‘", "rdquo": "”", "ldquo": "“", "euro": "€",
  ]

  /// The text with `&amp;`, `&#39;`, `&#x2019;` and the common named references decoded; others
  /// left as written (the text of an HTML part, and the links a campaign's tracking rewrites).
  package var htmlReferencesDecoded: String {
    let text = self
    guard text.contains("&") else { return text }
    var out = ""
    var index = text.startIndex
    while let amp = text[index...].firstIndex(of: "&") {
      out += text[index..<amp]
      guard let semicolon = text[amp...].prefix(12).firstIndex(of: ";") else {
        out.append("&")
        index = text.index(after: amp)
        continue
      }
      let name = text[text.index(after: amp)..<semicolon]
      var decoded: String?
      if name.hasPrefix("#x") || name.hasPrefix("#X") {
        decoded = UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
      } else if name.hasPrefix("#") {
        decoded = UInt32(name.dropFirst()).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
      } else {
        decoded = Self.namedReferences[String(name)]
      }
      if let decoded {
        out += decoded
        index = text.index(after: semicolon)
      } else {
        out.append("&")
        index = text.index(after: amp)
      }
    }
    out += text[index...]
    return out
  }
}
