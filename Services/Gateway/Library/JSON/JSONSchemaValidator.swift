import Foundation
import Synchronization

/// Checks request values against the JSON Schemas of the OpenAPI document (JSON Schema 2020-12
/// as OpenAPI 3.1 uses it: `$ref` into `#/components/schemas`, `type`, `enum`, `const`,
/// `properties`, `required`, `additionalProperties`, `items`, `minItems`, `maxItems`, `minLength`,
/// `maxLength`, `pattern`, `format`, `minimum`, `maximum`, `allOf`, `anyOf`, `oneOf`, `not`,
/// `propertyNames`), plus Herald's `x-unique-items-by`. The first violation is reported in plain
/// words, naming the field by its path (`variants[1].weight`) and, for enums, the values allowed.
///
/// It also gives values back in the form the protobuf JSON decoder reads (date-times with an
/// upper-case `T` and `Z`).
struct JSONSchemaValidator: Sendable {
  struct Violation: Error, Equatable {
    var message: String
    var field: String?
    /// How far the check got in the innermost object before this failed (its members that
    /// passed), to tell which of several alternatives came closest.
    var progress = 0
  }

  let document: JSONNode
  private let patterns: PatternCache

  init(document: JSONNode) {
    self.document = document
    self.patterns = PatternCache()
  }

  /// Checks `value` against `schema`, where `path` names the value in messages ("" for a body).
  func validate(_ value: JSONNode, against schema: JSONNode, path: String = "") throws(Violation) -> JSONNode {
    var context = Context(validator: self)
    return try context.check(value, schema, path)
  }

  /// Every pattern of the document compiled once, so that a bad one fails at start-up.
  func compilePatterns() throws {
    func visit(_ node: JSONNode) throws {
      switch node {
      case .object(let members):
        for member in members {
          if member.key == "pattern", case .string(let pattern) = member.value { _ = try patterns.regex(pattern) }
          try visit(member.value)
        }
      case .array(let items): for item in items { try visit(item) }
      default: break
      }
    }
    try visit(document)
  }

  fileprivate func resolve(_ reference: String) -> JSONNode? {
    guard reference.hasPrefix("#/") else { return nil }
    var node = document
    for part in reference.dropFirst(2).split(separator: "/") {
      let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
      guard let next = node[key] else { return nil }
      node = next
    }
    return node
  }

  fileprivate func matches(_ text: String, pattern: String) -> Bool {
    guard let regex = try? patterns.regex(pattern) else { return false }
    let range = NSRange(text.startIndex..<text.endIndex, in: text)
    return regex.firstMatch(in: text, options: [], range: range) != nil
  }
}

/// Compiled patterns, by their text.
private final class PatternCache: Sendable {
  private let compiled = Mutex<[String: NSRegularExpressionBox]>([:])

  /// ICU's `$` also matches before a final line break, where ECMA-262's (and Python's `fullmatch`
  /// and Rust's) does not: a pattern's final `$` is compiled as `\z`, the very end.
  func regex(_ pattern: String) throws -> NSRegularExpression {
    if let box = compiled.withLock({ $0[pattern] }) { return box.regex }
    var source = pattern
    if source.hasSuffix("$") && !source.hasSuffix("\\$") {
      source = String(source.dropLast()) + "\\z"
    }
    let regex = try NSRegularExpression(pattern: source, options: [])
    compiled.withLock { $0[pattern] = NSRegularExpressionBox(regex: regex) }
    return regex
  }
}

/// NSRegularExpression is immutable once made, and documented as safe to use from any thread.
private struct NSRegularExpressionBox: @unchecked Sendable {
  let regex: NSRegularExpression
}

private struct Context {
  let validator: JSONSchemaValidator
  var depth = 0

  typealias Violation = JSONSchemaValidator.Violation

  func named(_ path: String) -> String { path.isEmpty ? "the body" : path }

  func violation(_ path: String, _ what: String) -> Violation {
    Violation(message: "\(named(path)) \(what)", field: path.isEmpty ? nil : path)
  }

  mutating func check(_ value: JSONNode, _ schema: JSONNode, _ path: String) throws(Violation) -> JSONNode {
    depth += 1
    defer { depth -= 1 }
    guard depth < 64 else { throw violation(path, "is nested too deep") }
    guard case .object = schema else { return value }
    var value = value
    if case .string(let reference) = schema["$ref"] {
      guard let target = validator.resolve(reference) else { throw violation(path, "has a schema that cannot be found") }
      value = try check(value, target, path)
    }
    if let allowed = schema["type"] {
      let names: [String] = allowed.items?.compactMap(\.string) ?? allowed.string.map { [$0] } ?? []
      let kind = value.kind
      guard names.contains(kind) || (kind == "integer" && names.contains("number")) else {
        throw violation(path, "must be \(names.map(Self.describe).joined(separator: " or ")), not \(Self.describe(kind))")
      }
    }
    if let choices = schema["enum"]?.items, !choices.contains(value) {
      let listed = choices.map { $0.string ?? $0.text }.joined(separator: ", ")
      // An item of a list of choices is named by the list ("scopes holds 'root', which is not...").
      if path.hasSuffix("]"), let open = path.lastIndex(of: "[") {
        let list = String(path[..<open])
        throw Violation(
          message: "\(named(list)) holds \(Self.got(value).dropFirst(5).dropLast()), which is not one of \(listed)", field: list)
      }
      throw violation(path, "must be one of \(listed)\(Self.got(value))")
    }
    if let constant = schema["const"], constant != value {
      throw violation(path, "must be \(constant.string ?? constant.text) here\(Self.got(value))")
    }
    switch value {
    case .string(let text): value = try checkString(text, schema, path)
    case .number: try checkNumber(value, schema, path)
    case .array(let items): value = try checkArray(items, schema, path)
    case .object(let members): value = try checkObject(members, schema, path)
    default: break
    }
    if let all = schema["allOf"]?.items {
      for part in all { value = try check(value, part, path) }
    }
    if let any = schema["anyOf"]?.items {
      var failures: [Violation] = []
      var matched: JSONNode?
      for part in any {
        do throws(Violation) {
          matched = try check(value, part, path)
          break
        } catch {
          failures.append(error)
        }
      }
      guard let matched else { throw alternatives(schema, path, failures) }
      value = matched
    }
    if let one = schema["oneOf"]?.items {
      var failures: [Violation] = []
      var matches: [JSONNode] = []
      for part in one {
        do throws(Violation) {
          matches.append(try check(value, part, path))
        } catch {
          failures.append(error)
        }
      }
      guard matches.count == 1 else {
        if matches.isEmpty { throw alternatives(schema, path, failures) }
        throw violation(path, Self.hint(schema) ?? "fits more than one of the forms it may take; give only one")
      }
      value = matches[0]
    }
    if let forbidden = schema["not"] {
      var copy = self
      if (try? copy.check(value, forbidden, path)) != nil {
        throw violation(path, Self.hint(schema) ?? "is not allowed in this form")
      }
    }
    return value
  }

  /// When no alternative fits, the one that came closest speaks: the deepest field, then the
  /// one whose object got furthest (e.g. a segment condition whose field and op fit a form but
  /// whose value does not is reported at its value). The schema's own words win when it has them.
  func alternatives(_ schema: JSONNode, _ path: String, _ failures: [Violation]) -> Violation {
    func depth(_ violation: Violation) -> Int {
      (violation.field ?? "").reduce(0) { $0 + ($1 == "." || $1 == "[" ? 1 : 0) } + ((violation.field ?? "").isEmpty ? 0 : 1)
    }
    let closest = failures.enumerated().max { a, b in
      (depth(a.element), a.element.progress, -a.offset) < (depth(b.element), b.element.progress, -b.offset)
    }?.element
    if let hint = Self.hint(schema) {
      var result = violation(path, hint)
      if let field = closest?.field, field.hasPrefix(path) { result.field = field }
      return result
    }
    return closest ?? violation(path, "does not fit any of the forms it may take")
  }

  /// A schema's own words for what it wants (`x-message`), else its description.
  static func hint(_ schema: JSONNode) -> String? {
    schema["x-message"]?.string
  }

  static func describe(_ kind: String) -> String {
    switch kind {
    case "string": "a string"
    case "integer": "a whole number"
    case "number": "a number"
    case "boolean": "true or false"
    case "object": "an object"
    case "array": "a list"
    case "null": "null"
    default: kind
    }
  }

  static func got(_ value: JSONNode) -> String {
    let text = value.string.map { "'\($0)'" } ?? value.text
    return text.count <= 80 ? " (got \(text))" : ""
  }

  func checkString(_ text: String, _ schema: JSONNode, _ path: String) throws(Violation) -> JSONNode {
    let length = text.unicodeScalars.count
    if let minimum = schema["minLength"]?.double, Double(length) < minimum {
      throw violation(path, minimum == 1 ? "must not be empty" : "must be at least \(Int(minimum)) characters long")
    }
    if let maximum = schema["maxLength"]?.double, Double(length) > maximum {
      throw violation(path, "must be at most \(Int(maximum)) characters long (it is \(length))")
    }
    if case .string(let pattern) = schema["pattern"], !validator.matches(text, pattern: pattern) {
      let shown = text.count <= 80 ? "'\(text)'" : "'\(text.prefix(77))...'"
      throw violation(path, Self.hint(schema) ?? "\(shown) is not in the expected form (\(pattern))")
    }
    var result = JSONNode.string(text)
    if case .string(let format) = schema["format"] {
      switch format {
      case "uuid":
        guard UUID(uuidString: text) != nil, text.utf8.count == 36 else { throw violation(path, "'\(text)' is not a UUID") }
      case "date-time":
        guard let canonical = RFC3339.canonical(text) else {
          throw violation(path, "'\(text)' is not a date-time like 2026-12-04T09:30:00Z")
        }
        result = .string(canonical)
      case "date":
        guard RFC3339.isDate(text) else { throw violation(path, "'\(text)' is not a date like 2026-12-04") }
      case "byte":
        guard Data(base64Encoded: text) != nil else { throw violation(path, "is not base64") }
      case "herald-json-object":
        guard case .object = try? JSONParser.parse(Array(text.utf8)) else {
          throw violation(path, "must hold a JSON object, e.g. {\"plan\": \"pro\"}")
        }
      default:
        break
      }
    }
    return result
  }

  func checkNumber(_ value: JSONNode, _ schema: JSONNode, _ path: String) throws(Violation) {
    guard let number = value.double else { return }
    if let minimum = schema["minimum"]?.double, number < minimum {
      throw violation(path, "must be at least \(Self.plain(minimum))\(Self.got(value))")
    }
    if let maximum = schema["maximum"]?.double, number > maximum {
      throw violation(path, "must be at most \(Self.plain(maximum))\(Self.got(value))")
    }
  }

  static func plain(_ number: Double) -> String {
    number.rounded() == number && abs(number) < 1e18 ? String(Int64(number)) : String(number)
  }

  mutating func checkArray(_ items: [JSONNode], _ schema: JSONNode, _ path: String) throws(Violation) -> JSONNode {
    if let minimum = schema["minItems"]?.double, Double(items.count) < minimum {
      throw violation(path, minimum == 1 ? "must not be empty" : "must hold at least \(Int(minimum)) items")
    }
    if let maximum = schema["maxItems"]?.double, Double(items.count) > maximum {
      throw violation(path, "must hold at most \(Int(maximum)) items (it holds \(items.count))")
    }
    var checked: [JSONNode] = []
    checked.reserveCapacity(items.count)
    if let itemSchema = schema["items"] {
      for (index, item) in items.enumerated() { checked.append(try check(item, itemSchema, "\(path)[\(index)]")) }
    } else {
      checked = items
    }
    if case .string(let key) = schema["x-unique-items-by"] {
      var seen: [JSONNode] = []
      for (index, item) in checked.enumerated() {
        guard let value = item[key] else { continue }
        if seen.contains(value) {
          throw violation("\(path)[\(index)].\(key)", "\(value.string.map { "'\($0)'" } ?? value.text) appears twice in \(named(path))")
        }
        seen.append(value)
      }
    }
    return .array(checked)
  }

  mutating func checkObject(_ members: [(key: String, value: JSONNode)], _ schema: JSONNode, _ path: String) throws(Violation) -> JSONNode {
    let properties = schema["properties"]?.members ?? []
    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    if let required = schema["required"]?.items {
      for case .string(let name) in required where !members.contains(where: { $0.key == name }) {
        throw Violation(message: "\(child(name)) is required", field: child(name))
      }
    }
    var checked: [(key: String, value: JSONNode)] = []
    // Every declared member is checked, and the first failure reported with how many passed.
    var failure: Violation?
    var passed = 0
    for member in members {
      if let propertySchema = properties.first(where: { $0.key == member.key })?.value {
        do throws(Violation) {
          checked.append((member.key, try check(member.value, propertySchema, child(member.key))))
          passed += 1
        } catch {
          failure = failure ?? error
        }
        continue
      }
      if let names = schema["propertyNames"] {
        _ = try check(.string(member.key), names, child(member.key))
      }
      switch schema["additionalProperties"] {
      case .bool(false)?:
        let known = properties.map(\.key)
        let list = known.isEmpty ? "it takes no fields" : "its fields are \(known.joined(separator: ", "))"
        throw Violation(message: "\(child(member.key)) is not a field of \(named(path)); \(list)", field: child(member.key))
      case .object(let additional)?:
        checked.append((member.key, try check(member.value, .object(additional), child(member.key))))
      default:
        checked.append(member)
      }
    }
    if var failure {
      if failure.progress == 0 { failure.progress = passed + 1 }
      throw failure
    }
    return .object(checked)
  }
}
