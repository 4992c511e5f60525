/// A strict JSON parser (RFC 8259) for request bodies, whose errors say in plain words what is
/// wrong and where: the line and column of a syntax error, or the field whose string holds what
/// Herald cannot store (NUL, a lone surrogate) or whose key appears twice.
struct JSONParser {
  struct Failure: Error, Equatable {
    var message: String
    /// The field the problem is in (`a.b[2]`), when it is about a value.
    var field: String?
  }

  static let maxDepth = 64

  private let bytes: [UInt8]
  private var index = 0
  private var path: [String] = []

  private init(_ bytes: [UInt8]) {
    self.bytes = bytes
  }

  /// Parses one JSON value filling the whole text (whitespace around it allowed).
  static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONNode {
    var parser = JSONParser(bytes)
    parser.skipWhitespace()
    guard parser.index < bytes.count else { throw Failure(message: "the request body is empty; send a JSON object") }
    let value = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.index == bytes.count else {
      throw parser.syntax("unexpected text after the JSON value")
    }
    return value
  }

  private var fieldPath: String? {
    guard !path.isEmpty else { return nil }
    var text = ""
    for component in path {
      if component.hasPrefix("[") || text.isEmpty { text += component } else { text += "." + component }
    }
    return text
  }

  /// A syntax error at the current position, with its line and column.
  private func syntax(_ what: String) -> Failure {
    var line = 1
    var column = 1
    for byte in bytes[..<min(index, bytes.count)] {
      if byte == UInt8(ascii: "\n") {
        line += 1
        column = 1
      } else if byte & 0xC0 != 0x80 {
        column += 1
      }
    }
    return Failure(message: "the request body is not valid JSON: \(what) at line \(line), column \(column)")
  }

  private mutating func skipWhitespace() {
    while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
  }

  private mutating func value(depth: Int) throws(Failure) -> JSONNode {
    guard depth < Self.maxDepth else { throw syntax("values are nested more than \(Self.maxDepth) deep") }
    guard index < bytes.count else { throw syntax("the text ends where a value was expected") }
    switch bytes[index] {
    case UInt8(ascii: "{"): return try object(depth: depth)
    case UInt8(ascii: "["): return try array(depth: depth)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): return try literal("true", .bool(true))
    case UInt8(ascii: "f"): return try literal("false", .bool(false))
    case UInt8(ascii: "n"): return try literal("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
    default: throw syntax("unexpected character '\(Self.shown(bytes[index]))'")
    }
  }

  private static func shown(_ byte: UInt8) -> String {
    byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
  }

  private mutating func literal(_ word: String, _ result: JSONNode) throws(Failure) -> JSONNode {
    let expected = Array(word.utf8)
    guard index + expected.count <= bytes.count, Array(bytes[index..<index + expected.count]) == expected else {
      throw syntax("unexpected text (expected \(word)?)")
    }
    index += expected.count
    return result
  }

  private mutating func object(depth: Int) throws(Failure) -> JSONNode {
    index += 1
    var members: [(key: String, value: JSONNode)] = []
    var seen = Set<String>()
    skipWhitespace()
    if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
      index += 1
      return .object([])
    }
    while true {
      skipWhitespace()
      guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw syntax("expected a quoted key") }
      let key = try string()
      guard seen.insert(key).inserted else {
        path.append(key)
        defer { path.removeLast() }
        throw Failure(message: "\(fieldPath ?? key) appears twice in the same object", field: fieldPath)
      }
      skipWhitespace()
      guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw syntax("expected ':' after a key") }
      index += 1
      skipWhitespace()
      path.append(key)
      let value = try value(depth: depth + 1)
      path.removeLast()
      members.append((key, value))
      skipWhitespace()
      guard index < bytes.count else { throw syntax("the text ends inside an object") }
      if bytes[index] == UInt8(ascii: ",") {
        index += 1
        continue
      }
      guard bytes[index] == UInt8(ascii: "}") else { throw syntax("expected ',' or '}'") }
      index += 1
      return .object(members)
    }
  }

  private mutating func array(depth: Int) throws(Failure) -> JSONNode {
    index += 1
    var items: [JSONNode] = []
    skipWhitespace()
    if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
      index += 1
      return .array([])
    }
    while true {
      skipWhitespace()
      path.append("[\(items.count)]")
      let item = try value(depth: depth + 1)
      path.removeLast()
      items.append(item)
      skipWhitespace()
      guard index < bytes.count else { throw syntax("the text ends inside an array") }
      if bytes[index] == UInt8(ascii: ",") {
        index += 1
        continue
      }
      guard bytes[index] == UInt8(ascii: "]") else { throw syntax("expected ',' or ']'") }
      index += 1
      return .array(items)
    }
  }

  private mutating func number() throws(Failure) -> JSONNode {
    let start = index
    func digits() -> Int {
      let from = index
      while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
      return index - from
    }
    if bytes[index] == UInt8(ascii: "-") { index += 1 }
    guard index < bytes.count else { throw syntax("a number ends after '-'") }
    if bytes[index] == UInt8(ascii: "0") {
      index += 1
    } else if digits() == 0 {
      throw syntax("a number needs digits")
    }
    if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
      index += 1
      guard digits() > 0 else { throw syntax("a number needs digits after '.'") }
    }
    if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
      index += 1
      if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
      guard digits() > 0 else { throw syntax("a number needs digits in its exponent") }
    }
    return .number(String(decoding: bytes[start..<index], as: UTF8.self))
  }

  private mutating func string() throws(Failure) -> String {
    index += 1
    var scalars = String.UnicodeScalarView()
    func refuse(_ what: String) -> Failure {
      let field = fieldPath
      return Failure(message: "\(field ?? "a key") \(what)", field: field)
    }
    while true {
      guard index < bytes.count else { throw syntax("a string is not closed") }
      let byte = bytes[index]
      switch byte {
      case UInt8(ascii: "\""):
        index += 1
        return String(scalars)
      case UInt8(ascii: "\\"):
        index += 1
        guard index < bytes.count else { throw syntax("a string is not closed") }
        let escape = bytes[index]
        index += 1
        switch escape {
        case UInt8(ascii: "\""): scalars.append("\"")
        case UInt8(ascii: "\\"): scalars.append("\\")
        case UInt8(ascii: "/"): scalars.append("/")
        case UInt8(ascii: "b"): scalars.append("\u{08}")
        case UInt8(ascii: "f"): scalars.append("\u{0C}")
        case UInt8(ascii: "n"): scalars.append("\n")
        case UInt8(ascii: "r"): scalars.append("\r")
        case UInt8(ascii: "t"): scalars.append("\t")
        case UInt8(ascii: "u"):
          var code = try hex4()
          if (0xD800...0xDBFF).contains(code) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
              throw refuse("holds a lone surrogate (\\u\(String(code, radix: 16))), which is not text")
            }
            index += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else {
              throw refuse("holds a lone surrogate (\\u\(String(code, radix: 16))), which is not text")
            }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          } else if (0xDC00...0xDFFF).contains(code) {
            throw refuse("holds a lone surrogate (\\u\(String(code, radix: 16))), which is not text")
          }
          guard code != 0 else { throw refuse("holds a NUL character (U+0000), which cannot be stored") }
          guard let scalar = Unicode.Scalar(code) else { throw syntax("bad \\u escape") }
          scalars.append(scalar)
        default:
          index -= 1
          throw syntax("unknown escape '\\\(Self.shown(escape))'")
        }
      case 0x00:
        throw refuse("holds a NUL character (U+0000), which cannot be stored")
      case 0x01..<0x20:
        throw syntax("a control character (\\x\(String(byte, radix: 16))) must be escaped in a string")
      case 0x00..<0x80:
        scalars.append(Unicode.Scalar(byte))
        index += 1
      default:
        guard let scalar = decodeUTF8() else { throw refuse("is not valid UTF-8") }
        scalars.append(scalar)
      }
    }
  }

  private mutating func hex4() throws(Failure) -> UInt32 {
    guard index + 4 <= bytes.count else { throw syntax("a \\u escape needs four hex digits") }
    var value: UInt32 = 0
    for byte in bytes[index..<index + 4] {
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw syntax("a \\u escape needs four hex digits")
      }
      value = value << 4 | UInt32(digit)
    }
    index += 4
    return value
  }

  /// One multi-byte UTF-8 sequence (shortest form, no surrogates); nil when it is not valid.
  private mutating func decodeUTF8() -> Unicode.Scalar? {
    let lead = bytes[index]
    let (length, minimum): (Int, UInt32) =
      switch lead {
      case 0xC2...0xDF: (2, 0x80)
      case 0xE0...0xEF: (3, 0x800)
      case 0xF0...0xF4: (4, 0x10000)
      default: (0, 0)
      }
    guard length > 0, index + length <= bytes.count else { return nil }
    var value = UInt32(lead) & (0xFF >> (length + 1))
    for offset in 1..<length {
      let byte = bytes[index + offset]
      guard byte & 0xC0 == 0x80 else { return nil }
      value = value << 6 | UInt32(byte & 0x3F)
    }
    guard value >= minimum, value <= 0x10FFFF, !(0xD800...0xDFFF).contains(value), let scalar = Unicode.Scalar(value) else {
      return nil
    }
    index += length
    return scalar
  }
}
