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
}

/// What a campaign's `status_reason` starts with when the deliverability guard paused it: the
/// campaign service writes it, verification finds such campaigns by it.
package enum DeliverabilityGuardReason {
  package static let prefix = "paused by the deliverability guard: "
}
