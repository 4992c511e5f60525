import Foundation

/// A JSON value: segment condition values, remote-table (CRM) record fields.
package enum JSONValue: Codable, Sendable, Hashable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  package init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  package func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    switch self {
    case .null: try container.encodeNil()
    case .bool(let value): try container.encode(value)
    case .number(let value): try container.encode(value)
    case .string(let value): try container.encode(value)
    case .array(let value): try container.encode(value)
    case .object(let value): try container.encode(value)
    }
  }

  package static func parse(_ text: String) -> JSONValue? {
    try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
  }

  package var typeName: String {
    switch self {
    case .null: "null"
    case .bool: "boolean"
    case .number: "number"
    case .string: "string"
    case .array: "array"
    case .object: "object"
    }
  }

  package var stringValue: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  package var object: [String: JSONValue]? {
    if case .object(let value) = self { return value }
    return nil
  }

  package var array: [JSONValue]? {
    if case .array(let value) = self { return value }
    return nil
  }
}

extension JSONValue {
  /// Whether any string or key, however deep, holds NUL (U+0000), which PostgreSQL cannot store.
  package var holdsNUL: Bool {
    switch self {
    case .null, .bool, .number: false
    case .string(let text): text.utf8.contains(0)
    case .array(let values): values.contains { $0.holdsNUL }
    case .object(let members): members.contains { $0.key.utf8.contains(0) || $0.value.holdsNUL }
    }
  }
}
