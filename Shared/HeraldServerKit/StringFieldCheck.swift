import Foundation
import SwiftProtobuf

/// Finds string fields that hold a NUL character (U+0000), which PostgreSQL cannot store in text
/// or jsonb: every request is checked before its handler runs, so such a value is refused naming
/// the field instead of failing later in a statement. (Protobuf strings are UTF-8 by definition;
/// swift-protobuf refuses a request whose strings are not.)
package enum StringFieldCheck {
  /// The words for a value holding NUL, after the field's name; every entry point says the same.
  package static let holdsNUL = "holds a NUL character (U+0000), which cannot be stored"

  /// `field` and what is wrong with it.
  package static func holdsNUL(_ field: String) -> String { "\(field) \(holdsNUL)" }

  /// The path of the first string (or map key) holding NUL, written as the JSON form of the
  /// message names it (`rows[3].subscriber.email`); nil when there is none.
  package static func firstNUL(in message: some SwiftProtobuf.Message) -> String? {
    var finder = NULFinder()
    try? message.traverse(visitor: &finder)
    guard finder.found else { return nil }
    // Rare: only then is the field located by name, through the message's JSON form.
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    guard let data = try? message.jsonUTF8Data(options: options),
      let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    else { return "request" }
    return path(in: object, at: "") ?? "request"
  }

  static func path(in value: Any, at prefix: String) -> String? {
    switch value {
    case let text as String:
      return text.containsNUL ? (prefix.isEmpty ? "request" : prefix) : nil
    case let array as [Any]:
      for (index, element) in array.enumerated() {
        if let found = path(in: element, at: "\(prefix)[\(index)]") { return found }
      }
      return nil
    case let object as [String: Any]:
      for key in object.keys.sorted() {
        let name = prefix.isEmpty ? key : "\(prefix).\(key)"
        if key.containsNUL { return name }
        if let element = object[key], let found = path(in: element, at: name) { return found }
      }
      return nil
    default:
      return nil
    }
  }
}

/// Walks a message's set fields, nested messages and maps included, noting whether any string
/// holds NUL.
private struct NULFinder: SwiftProtobuf.Visitor {
  var found = false

  mutating func note(_ text: String) {
    if !found && text.containsNUL { found = true }
  }

  mutating func note(any value: Any) throws {
    if let text = value as? String {
      note(text)
    } else if let message = value as? any SwiftProtobuf.Message {
      try message.traverse(visitor: &self)
    }
  }

  mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
  mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
  mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
  mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
  mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {}
  mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {}
  mutating func visitUnknown(bytes: Data) throws {}

  mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {
    note(value)
  }

  mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
    guard !found else { return }
    try value.traverse(visitor: &self)
  }

  mutating func visitMapField<KeyType, ValueType: MapValueType>(
    fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType, fieldNumber: Int
  ) throws {
    for (key, element) in value {
      try note(any: key)
      try note(any: element)
    }
  }

  mutating func visitMapField<KeyType, ValueType>(
    fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
    fieldNumber: Int
  ) throws where ValueType.RawValue == Int {
    for key in value.keys { try note(any: key) }
  }

  mutating func visitMapField<KeyType, ValueType>(
    fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type, value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
    fieldNumber: Int
  ) throws {
    for (key, element) in value {
      try note(any: key)
      try element.traverse(visitor: &self)
    }
  }
}

/// A request message whose handler checks its own strings, so that one bad item of a batch is
/// reported on its own instead of the whole request being refused (e.g. the rows of an import).
package protocol ChecksOwnStrings {}

extension String {
  /// Whether the text holds NUL: memchr over the contiguous UTF-8 of a native string (every string
  /// of every request passes here; the generic `utf8.contains(0)` walked them byte by byte).
  fileprivate var containsNUL: Bool {
    utf8.withContiguousStorageIfAvailable { bytes in
      guard let start = bytes.baseAddress else { return false }
      return memchr(start, 0, bytes.count) != nil
    } ?? utf8.contains(0)
  }
}
