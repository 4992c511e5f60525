import Foundation

/// A JSON value as template text: strings, numbers and booleans; nil for null, arrays and objects.
package struct AttributeText: Decodable, Sendable {
  package var text: String?

  /// The same from PostgreSQL's view of one jsonb value: `jsonb_typeof(v)` and `v #>> '{}'`, so
  /// the relay reads only the attributes a template uses without decoding the whole object.
  package init(jsonType: String?, raw: String?) {
    switch (jsonType, raw) {
    case ("string", let raw?), ("boolean", let raw?): text = raw
    case ("number", let raw?): text = Self.number(raw)
    default: text = nil
    }
  }

  package init(from decoder: any Decoder) throws {
    // Strings first: most attributes are, and each failed attempt costs a thrown error. A JSON
    // value decodes as at most one of these, so the order does not change the result.
    let container = try decoder.singleValueContainer()
    if let value = try? container.decode(String.self) {
      text = value
    } else if let value = try? container.decode(Int64.self) {
      text = String(value)
    } else if let value = try? container.decode(Double.self) {
      text = String(value)
    } else {
      text = (try? container.decode(Bool.self)).map { $0 ? "true" : "false" }
    }
  }

  /// A JSON number's text as the decoder above renders it: integers directly, anything else
  /// through the decoder itself (fractions, exponents, numbers too large for a Double).
  static func number(_ raw: String) -> String? {
    if let integer = Int64(raw) { return String(integer) }
    return (try? decoder.decode(AttributeText.self, from: Data(raw.utf8)))?.text
  }

  static let decoder = JSONDecoder()
}
