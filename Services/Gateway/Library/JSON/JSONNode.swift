import Foundation

/// A JSON value as a request carried it: numbers keep their text (so 64-bit integers and the
/// difference between `1` and `1.0` survive), objects keep their order. Parsed by `JSONParser`,
/// checked by `JSONSchemaValidator`, written back by `text` for the protobuf decoder.
enum JSONNode: Sendable, Equatable {
  case null
  case bool(Bool)
  case number(String)
  case string(String)
  case array([JSONNode])
  case object([(key: String, value: JSONNode)])

  static func == (lhs: JSONNode, rhs: JSONNode) -> Bool {
    switch (lhs, rhs) {
    case (.null, .null): return true
    case (.bool(let a), .bool(let b)): return a == b
    case (.number(let a), .number(let b)): return a == b || (Double(a) != nil && Double(a) == Double(b))
    case (.string(let a), .string(let b)): return a == b
    case (.array(let a), .array(let b)): return a == b
    case (.object(let a), .object(let b)):
      guard a.count == b.count else { return false }
      let other = Dictionary(b.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
      return a.allSatisfy { other[$0.key] == $0.value }
    default: return false
    }
  }

  subscript(key: String) -> JSONNode? {
    guard case .object(let members) = self else { return nil }
    return members.first { $0.key == key }?.value
  }

  var members: [(key: String, value: JSONNode)]? {
    if case .object(let members) = self { return members }
    return nil
  }

  var items: [JSONNode]? {
    if case .array(let items) = self { return items }
    return nil
  }

  var string: String? {
    if case .string(let text) = self { return text }
    return nil
  }

  var bool: Bool? {
    if case .bool(let flag) = self { return flag }
    return nil
  }

  /// The number's value (nil for other kinds).
  var double: Double? {
    if case .number(let text) = self { return Double(text) }
    return nil
  }

  /// An integer without a fraction or exponent that changes it (`2`, `2.0`, `2e0`).
  var isInteger: Bool {
    guard case .number(let text) = self else { return false }
    if text.allSatisfy({ $0.isNumber || $0 == "-" }) { return true }
    guard let value = Double(text) else { return false }
    return value.rounded() == value
  }

  /// The JSON kind, as a JSON Schema `type` names it.
  var kind: String {
    switch self {
    case .null: "null"
    case .bool: "boolean"
    case .number: isInteger ? "integer" : "number"
    case .string: "string"
    case .array: "array"
    case .object: "object"
    }
  }

  /// `members` with `key` set (replaced in place, or added at the end).
  func setting(_ key: String, to value: JSONNode) -> JSONNode {
    guard case .object(var members) = self else { return self }
    if let index = members.firstIndex(where: { $0.key == key }) {
      members[index].value = value
    } else {
      members.append((key, value))
    }
    return .object(members)
  }

  /// Compact JSON text.
  var text: String {
    var out = ""
    write(to: &out)
    return out
  }

  private func write(to out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let flag): out += flag ? "true" : "false"
    case .number(let text): out += text
    case .string(let text): Self.quote(text, into: &out)
    case .array(let items):
      out += "["
      for (index, item) in items.enumerated() {
        if index > 0 { out += "," }
        item.write(to: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (index, member) in members.enumerated() {
        if index > 0 { out += "," }
        Self.quote(member.key, into: &out)
        out += ":"
        member.value.write(to: &out)
      }
      out += "}"
    }
  }

  private static func quote(_ text: String, into out: inout String) {
    out += "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    out += "\""
  }
}
