import Foundation

/// A JSON value whose objects keep the order their keys were added in, so that the generated
/// document is the same byte for byte from one run to the next (and reads in a sensible order).
indirect enum OrderedJSON: Sendable {
  case null
  case bool(Bool)
  case number(String)
  case string(String)
  case array([OrderedJSON])
  case object([(String, OrderedJSON)])

  static func integer(_ value: Int64) -> OrderedJSON { .number(String(value)) }

  static func double(_ value: Double) -> OrderedJSON {
    value.rounded() == value && abs(value) < 1e15 ? .number(String(Int64(value))) : .number(String(value))
  }

  /// Parses a JSON text given in an option or a file; objects get their keys sorted.
  static func parse(_ text: String, what: String) throws -> OrderedJSON {
    do {
      return try JSONDecoder().decode(Decoded.self, from: Data(text.utf8)).value
    } catch {
      throw GeneratorError("\(what) is not valid JSON: \(error)")
    }
  }

  /// Decodes any JSON value (booleans stay booleans: JSONDecoder does not read 1 as true).
  private struct Decoded: Decodable {
    var value: OrderedJSON

    init(from decoder: any Decoder) throws {
      let container = try decoder.singleValueContainer()
      if container.decodeNil() {
        value = .null
      } else if let flag = try? container.decode(Bool.self) {
        value = .bool(flag)
      } else if let whole = try? container.decode(Int64.self) {
        value = .integer(whole)
      } else if let number = try? container.decode(Double.self) {
        value = .double(number)
      } else if let text = try? container.decode(String.self) {
        value = .string(text)
      } else if let items = try? container.decode([Decoded].self) {
        value = .array(items.map(\.value))
      } else {
        let object = try container.decode([String: Decoded].self)
        value = .object(object.sorted { $0.key < $1.key }.map { ($0.key, $0.value.value) })
      }
    }
  }

  subscript(key: String) -> OrderedJSON? {
    guard case .object(let pairs) = self else { return nil }
    return pairs.first { $0.0 == key }?.1
  }

  /// Sets `key`, replacing the value in place when the key is there already.
  mutating func set(_ key: String, _ value: OrderedJSON) {
    guard case .object(var pairs) = self else { return }
    if let index = pairs.firstIndex(where: { $0.0 == key }) {
      pairs[index].1 = value
    } else {
      pairs.append((key, value))
    }
    self = .object(pairs)
  }

  mutating func remove(_ key: String) {
    guard case .object(let pairs) = self else { return }
    self = .object(pairs.filter { $0.0 != key })
  }

  /// `other`'s keys set over this object's (a shallow merge).
  func merging(_ other: OrderedJSON) -> OrderedJSON {
    guard case .object(let pairs) = other else { return self }
    var result = self
    for (key, value) in pairs { result.set(key, value) }
    return result
  }

  var objectPairs: [(String, OrderedJSON)] {
    if case .object(let pairs) = self { return pairs }
    return []
  }

  /// The text, indented by two spaces, with a final newline.
  func rendered() -> String {
    var out = ""
    write(to: &out, indent: 0)
    return out + "\n"
  }

  private func write(to out: inout String, indent: Int) {
    let pad = String(repeating: "  ", count: indent + 1)
    let closing = String(repeating: "  ", count: indent)
    switch self {
    case .null: out += "null"
    case .bool(let value): out += value ? "true" : "false"
    case .number(let text): out += text
    case .string(let text): out += Self.quoted(text)
    case .array(let items):
      guard !items.isEmpty else {
        out += "[]"
        return
      }
      if items.allSatisfy({ if case .string = $0 { return true } else { return false } }) {
        out +=
          "["
          + items.map { item -> String in
            var text = ""
            item.write(to: &text, indent: 0)
            return text
          }.joined(separator: ", ") + "]"
        return
      }
      out += "[\n"
      for (index, item) in items.enumerated() {
        out += pad
        item.write(to: &out, indent: indent + 1)
        out += index == items.count - 1 ? "\n" : ",\n"
      }
      out += closing + "]"
    case .object(let pairs):
      guard !pairs.isEmpty else {
        out += "{}"
        return
      }
      out += "{\n"
      for (index, (key, value)) in pairs.enumerated() {
        out += pad + Self.quoted(key) + ": "
        value.write(to: &out, indent: indent + 1)
        out += index == pairs.count - 1 ? "\n" : ",\n"
      }
      out += closing + "}"
    }
  }

  static func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        out += String(format: "\\u%04x", scalar.value)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

struct GeneratorError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
