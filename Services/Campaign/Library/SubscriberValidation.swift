import Foundation
import HeraldServerKit

/// Normalises and validates subscriber contact data (SPEC §2). Errors name the field.
package enum SubscriberValidation {
  package struct Invalid: Error, Equatable {
    package var field: String
    package var message: String
  }

  /// Lower-cased, trimmed e-mail; nil for an empty input.
  package static func email(_ raw: String, field: String = "email") throws(Invalid) -> String? {
    let value = trimmed(raw).lowercased()
    guard !value.isEmpty else { return nil }
    guard value.utf8.count <= 254 else {
      throw Invalid(field: field, message: "\(field) is longer than 254 characters")
    }
    let parts = value.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, let local = parts.first, let domain = parts.last, !local.isEmpty, local.utf8.count <= 64,
      domain.contains("."), !domain.hasPrefix("."), !domain.hasSuffix("."), !domain.contains(".."),
      value.utf8.allSatisfy({ $0 < 0x80 })
        // ASCII (nearly every address) by its bytes; Character's properties cost more than the rest of the row.
        ? !value.utf8.contains(where: { (0x09...0x0D).contains($0) || $0 == 0x20 || $0 == 0x2C || $0 == 0x3B || $0 == 0x3C || $0 == 0x3E })
          && domain.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x2E })
        : !value.contains(where: { $0.isWhitespace || $0 == "," || $0 == ";" || $0 == "<" || $0 == ">" })
          && domain.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." })
    else {
      throw Invalid(field: field, message: "\(field) '\(raw)' is not a valid e-mail address")
    }
    return value
  }

  /// E.164 (`+` then 7 to 15 digits, no leading zero); spaces, dashes, dots and parentheses
  /// are removed first. nil for an empty input.
  package static func phone(_ raw: String, field: String = "phone") throws(Invalid) -> String? {
    let trimmed = trimmed(raw)
    guard !trimmed.isEmpty else { return nil }
    let compact = trimmed.filter { !" -.()".contains($0) }
    let digits = compact.dropFirst()
    guard compact.first == "+", (7...15).contains(digits.count), digits.allSatisfy(\.isASCII),
      digits.allSatisfy(\.isNumber), digits.first != "0"
    else {
      throw Invalid(field: field, message: "\(field) '\(raw)' is not an E.164 number (e.g. +14155550123)")
    }
    return compact
  }

  package static let maxAttributesBytes = 32 * 1024

  /// A JSON object as text (at most 32 KiB); empty input means `{}`. No key or string in it may
  /// hold NUL (`\u0000`), which PostgreSQL's jsonb refuses.
  package static func attributes(_ raw: String, field: String = "attributes_json") throws(Invalid) -> String {
    let trimmed = trimmed(raw)
    guard !trimmed.isEmpty else { return "{}" }
    guard trimmed.utf8.count <= maxAttributesBytes else {
      throw Invalid(field: field, message: "\(field) is \(trimmed.utf8.count) bytes; at most \(maxAttributesBytes)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)), object is [String: Any] else {
      throw Invalid(field: field, message: "\(field) must be a JSON object")
    }
    guard !holdsNUL(object) else {
      throw Invalid(field: field, message: StringFieldCheck.holdsNUL(field))
    }
    return trimmed
  }

  /// Whether a decoded JSON value holds NUL in any string or key, however deep.
  static func holdsNUL(_ value: Any) -> Bool {
    switch value {
    case let text as String: text.utf8.contains(0)
    case let array as [Any]: array.contains(where: holdsNUL)
    case let object as [String: Any]: object.contains { key, element in key.utf8.contains(0) || holdsNUL(element) }
    default: false
    }
  }

  /// `raw` without white space and newlines around it; the usual text, which starts and ends
  /// with a visible ASCII character, is returned as it is without asking Foundation.
  package static func trimmed(_ raw: String) -> String {
    if let first = raw.utf8.first, let last = raw.utf8.last, (0x21...0x7E).contains(first), (0x21...0x7E).contains(last) {
      return raw
    }
    return raw.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  package static func name(_ raw: String, field: String) throws(Invalid) -> String {
    let value = trimmed(raw)
    guard value.utf8.count <= 200 || value.count <= 200 else {
      throw Invalid(field: field, message: "\(field) is longer than 200 characters")
    }
    return value
  }
}
