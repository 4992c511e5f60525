import Foundation
import SwiftProtobuf
import SwiftProtobufPluginLibrary

/// JSON Schemas of messages in their proto3 JSON form (field names as written in the .proto, as
/// the gateway reads and writes them), as `components/schemas` of the OpenAPI document.
///
/// A message is described twice when it is both sent and answered: the input schema (what the
/// gateway accepts: required fields, the Herald field rules, no internal or caller-set fields,
/// enums without their zero value) and the output schema (what it answers: every field, none
/// required, since proto3 JSON leaves out fields that hold their default). A message used one way
/// only has one schema under its own name; used both ways, the input one is `<name>Input`.
final class SchemaBuilder {
  enum Direction { case input, output }

  private(set) var components: [String: OrderedJSON] = [:]
  private var building: Set<String> = []
  private let inputs: Set<String>
  private let outputs: Set<String>

  init(operations: [Operation], outputs extraOutputs: [Descriptor] = []) {
    var inputs = Set<String>()
    var outputs = Set<String>()
    for message in extraOutputs { Self.collect(message, into: &outputs, skipping: { _ in false }) }
    for operation in operations {
      Self.collect(operation.method.inputType, into: &inputs, skipping: { $0.rules.internal || $0.rules.caller })
      Self.collect(operation.method.outputType, into: &outputs, skipping: { _ in false })
    }
    self.inputs = inputs
    self.outputs = outputs
  }

  private static func collect(_ message: Descriptor, into names: inout Set<String>, skipping: (FieldDescriptor) -> Bool) {
    guard message.wellKnownType == nil, names.insert(message.fullName).inserted else { return }
    for field in message.fields where field.type == .message && !skipping(field) {
      collect(field.messageType, into: &names, skipping: skipping)
    }
  }

  /// `herald.campaign.v1.Subscriber` → `campaign.v1.Subscriber` (+ `Input`).
  func componentName(_ message: Descriptor, _ direction: Direction) -> String {
    var name = message.fullName
    if name.hasPrefix("herald.") { name.removeFirst("herald.".count) }
    let both = inputs.contains(message.fullName) && outputs.contains(message.fullName)
    return direction == .input && both ? name + "Input" : name
  }

  /// A reference to the message's schema, building it on first use (well-known types inline).
  func reference(_ message: Descriptor, _ direction: Direction) throws -> OrderedJSON {
    if let inline = try wellKnown(message) { return inline }
    let name = componentName(message, direction)
    if components[name] == nil && !building.contains(name) {
      building.insert(name)
      components[name] = try objectSchema(message, direction)
      building.remove(name)
    }
    return .object([("$ref", .string("#/components/schemas/\(name)"))])
  }

  /// The message's object schema; `leaving` fields out (those bound to a route's path).
  func objectSchema(_ message: Descriptor, _ direction: Direction, leaving excluded: Set<Int32> = []) throws -> OrderedJSON {
    var properties: [(String, OrderedJSON)] = []
    var required: [OrderedJSON] = []
    for field in message.fields where !excluded.contains(field.number) {
      if direction == .input && (field.rules.internal || field.rules.caller) { continue }
      properties.append((field.name, try schema(of: field, direction)))
      if direction == .input && field.rules.required { required.append(.string(field.name)) }
    }
    var schema = OrderedJSON.object([("type", .string("object"))])
    if let description = Self.comment(message.sourceCodeInfoLocation) { schema.set("description", .string(description)) }
    schema.set("properties", .object(properties))
    if !required.isEmpty { schema.set("required", .array(required)) }
    schema.set("additionalProperties", .bool(false))
    let extra = message.options.Herald_Api_V1_schema.schemaJson
    if direction == .input && !extra.isEmpty {
      let keywords = try OrderedJSON.parse(extra, what: "\(message.fullName)'s schema_json")
      // Keywords that name a field left out here (bound to the path) do not apply to the body.
      let left = message.fields.filter { excluded.contains($0.number) }.map { "\"\($0.name)\"" }
      if !left.contains(where: extra.contains) { schema = schema.merging(keywords) }
    }
    return schema
  }

  func schema(of field: FieldDescriptor, _ direction: Direction) throws -> OrderedJSON {
    var schema: OrderedJSON
    if field.isMap {
      guard let (key, value) = field.messageType.mapKeyAndValue else {
        throw GeneratorError("\(field.fullName): a map without key and value")
      }
      schema = .object([("type", .string("object")), ("additionalProperties", try single(value, direction))])
      if key.type != .string {
        schema.set("propertyNames", .object([("pattern", .string("^-?[0-9]+$"))]))
      }
    } else if field.isRepeated {
      schema = .object([("type", .string("array")), ("items", try single(field, direction, item: true))])
      if direction == .input {
        if field.rules.hasMinItems { schema.set("minItems", .integer(Int64(field.rules.minItems))) }
        if field.rules.hasMaxItems { schema.set("maxItems", .integer(Int64(field.rules.maxItems))) }
      }
    } else {
      schema = try single(field, direction)
    }
    if let description = Self.comment(field.sourceCodeInfoLocation) {
      schema =
        schema["$ref"] != nil
        ? .object([("allOf", .array([schema])), ("description", .string(description))])
        : schema.merging(.object([("description", .string(description))]))
    }
    if direction == .input && !field.rules.schemaJson.isEmpty {
      schema = schema.merging(try OrderedJSON.parse(field.rules.schemaJson, what: "\(field.fullName)'s schema_json"))
    }
    return schema
  }

  /// The schema of one value of the field (an item when the field is repeated).
  private func single(_ field: FieldDescriptor, _ direction: Direction, item: Bool = false) throws -> OrderedJSON {
    let rules = field.rules
    let input = direction == .input
    switch field.type {
    case .string:
      var schema = OrderedJSON.object([("type", .string("string"))])
      if item {
        if input && rules.hasItemMaxLength { schema.set("maxLength", .integer(Int64(rules.itemMaxLength))) }
        if input && !rules.itemPattern.isEmpty { schema.set("pattern", .string(rules.itemPattern)) }
        if !rules.itemFormat.isEmpty { schema.set("format", .string(rules.itemFormat)) }
        return schema
      }
      if !rules.format.isEmpty && (input || ["uuid", "date-time"].contains(rules.format)) {
        schema.set("format", .string(rules.format))
      }
      guard input else { return schema }
      if rules.hasMinLength { schema.set("minLength", .integer(Int64(rules.minLength))) }
      if rules.hasMaxLength { schema.set("maxLength", .integer(Int64(rules.maxLength))) }
      if !rules.pattern.isEmpty { schema.set("pattern", .string(rules.pattern)) }
      if !rules.oneOf.isEmpty { schema.set("enum", .array(rules.oneOf.map { .string($0) })) }
      return schema
    case .bytes:
      return .object([("type", .string("string")), ("format", .string("byte"))])
    case .bool:
      return .object([("type", .string("boolean"))])
    case .double, .float:
      var schema = OrderedJSON.object([("type", .string("number"))])
      if input, rules.hasMinimum { schema.set("minimum", .double(rules.minimum)) }
      if input, rules.hasMaximum { schema.set("maximum", .double(rules.maximum)) }
      return schema
    case .int32, .sint32, .sfixed32, .uint32, .fixed32:
      let unsigned = field.type == .uint32 || field.type == .fixed32
      var schema = OrderedJSON.object([("type", .string("integer")), ("format", .string("int32"))])
      guard input else { return schema }
      let low = rules.hasMinimum ? rules.minimum : unsigned ? 0 : Double(Int32.min)
      let high = rules.hasMaximum ? rules.maximum : unsigned ? Double(UInt32.max) : Double(Int32.max)
      schema.set("minimum", .double(low))
      schema.set("maximum", .double(high))
      return schema
    case .int64, .sint64, .sfixed64, .uint64, .fixed64:
      return try int64(field, direction)
    case .enum:
      let values = field.enumType.values.filter { !(input && $0.number == 0) }.map { OrderedJSON.string($0.name) }
      return .object([("type", .string("string")), ("enum", .array(values))])
    case .message, .group:
      return try reference(field.messageType, direction)
    }
  }

  /// proto3 JSON writes 64-bit integers as strings and reads numbers or strings. The output
  /// schema is a string of digits; the input one takes either, kept to the same range: a
  /// minimum of 0 or 1 (or none) and at most 10^digits - 1, so that every value the schema
  /// allows, in either form, is one the service accepts.
  private func int64(_ field: FieldDescriptor, _ direction: Direction) throws -> OrderedJSON {
    guard direction == .input else {
      return .object([("type", .string("string")), ("format", .string("int64")), ("pattern", .string("^-?[0-9]+$"))])
    }
    let rules = field.rules
    let unsigned = [.uint64, .fixed64].contains(field.type)
    let minimum: Double? = rules.hasMinimum ? rules.minimum : unsigned ? 0 : nil
    var digits = 15
    if rules.hasMaximum {
      let text = String(Int64(rules.maximum))
      guard rules.maximum > 0, text.allSatisfy({ $0 == "9" }) else {
        throw GeneratorError("\(field.fullName): a 64-bit maximum must be 9, 99, 999...; got \(rules.maximum)")
      }
      digits = text.count
    }
    let pattern: String
    switch minimum {
    case nil: pattern = "^-?(0|[1-9][0-9]{0,\(digits - 1)})$"
    case 0: pattern = "^(0|[1-9][0-9]{0,\(digits - 1)})$"
    case 1: pattern = "^[1-9][0-9]{0,\(digits - 1)}$"
    default: throw GeneratorError("\(field.fullName): a 64-bit minimum must be 0 or 1")
    }
    let high = Double(String(repeating: "9", count: digits)) ?? 999_999_999_999_999
    return .object([
      ("type", .array([.string("integer"), .string("string")])), ("format", .string("int64")),
      ("minimum", .double(minimum ?? -high)), ("maximum", .double(high)), ("pattern", .string(pattern)),
    ])
  }

  /// Well-known types as proto3 JSON writes them.
  private func wellKnown(_ message: Descriptor) throws -> OrderedJSON? {
    switch message.fullName {
    case "google.protobuf.Timestamp":
      return .object([("type", .string("string")), ("format", .string("date-time"))])
    case "google.protobuf.Duration":
      return .object([("type", .string("string")), ("pattern", .string("^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$"))])
    case "google.protobuf.Struct":
      return .object([("type", .string("object"))])
    case "google.protobuf.Value":
      return .object([])
    case "google.protobuf.ListValue":
      return .object([("type", .string("array"))])
    case "google.protobuf.Empty":
      return .object([("type", .string("object")), ("additionalProperties", .bool(false))])
    default:
      guard message.wellKnownType == nil else {
        throw GeneratorError("the well-known type \(message.fullName) has no REST schema here yet")
      }
      return nil
    }
  }

  /// A leading comment as one paragraph per blank-line-separated block.
  static func comment(_ location: Google_Protobuf_SourceCodeInfo.Location?) -> String? {
    guard let text = location?.leadingComments, !text.isEmpty else { return nil }
    let paragraphs = text.components(separatedBy: "\n\n").map { block in
      block.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        .trimmingCharacters(in: .whitespaces)
    }
    let joined = paragraphs.filter { !$0.isEmpty }.joined(separator: "\n\n")
    return joined.isEmpty ? nil : joined
  }
}
