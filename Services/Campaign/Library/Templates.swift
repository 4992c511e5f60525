import Foundation
import HeraldCore
import Mustache

/// A variable a template may use, with an optional default.
package struct TemplateVariable: Sendable, Equatable, Codable {
  package var name: String
  package var defaultValue: String?

  package init(name: String, defaultValue: String? = nil) {
    self.name = name
    self.defaultValue = defaultValue
  }

  enum CodingKeys: String, CodingKey {
    case name
    case defaultValue = "default"
  }
}

/// A checked template: Mustache text (parsed by swift-mustache) whose every variable is declared.
package struct MessageTemplate: Sendable {
  package static let channels: Set<String> = ["email", "sms", "push", "whatsapp"]
  /// Variables filled from the subscriber's own fields; any other name comes from its attributes.
  package static let subscriberFields: Set<String> = ["email", "phone", "first_name", "last_name", "subscriber_id"]

  package var channel: String
  package var format: String
  package var subject: String
  package var body: String
  package var variables: [TemplateVariable]
  private let subjectTemplate: ParsedText
  private let bodyTemplate: ParsedText

  /// Checks a template as it is saved; the error names the field and, for a variable, its name.
  package init(
    channel: String, format: String, subject: String, body: String, variables: [TemplateVariable]
  ) throws(SubscriberValidation.Invalid) {
    guard Self.channels.contains(channel) else {
      throw .init(field: "channel", message: "channel '\(channel)' must be one of email, sms, push, whatsapp")
    }
    let format = format.isEmpty ? (channel == "email" ? "html" : "text") : format
    guard format == "html" || format == "text" else {
      throw .init(field: "format", message: "format '\(format)' must be html or text")
    }
    guard channel == "email" || format == "text" else {
      throw .init(field: "format", message: "\(channel) templates are text; format html is for e-mail only")
    }
    guard !body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
      throw .init(field: "body", message: "body is empty")
    }
    guard body.utf8.count <= 256 * 1024 else { throw .init(field: "body", message: "body is longer than 256 KiB") }
    if channel == "email" {
      guard !subject.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        throw .init(field: "subject", message: "subject is required for e-mail templates")
      }
      guard !subject.contains(where: \.isNewline), subject.count <= 998 else {
        throw .init(field: "subject", message: "subject must be one line of at most 998 characters")
      }
    } else if !subject.isEmpty {
      throw .init(field: "subject", message: "subject is for e-mail templates only")
    }

    var declared = Set<String>()
    for (index, variable) in variables.enumerated() {
      let field = "variables[\(index)].name"
      guard Self.isName(variable.name) else {
        throw .init(field: field, message: "variable name '\(variable.name)' must be letters, digits and _ (not starting with a digit)")
      }
      guard declared.insert(variable.name).inserted else {
        throw .init(field: field, message: "variable '\(variable.name)' is declared twice")
      }
    }

    self.subjectTemplate = try Self.parse(subject, field: "subject", format: "text", declared: declared)
    self.bodyTemplate = try Self.parse(body, field: "body", format: format, declared: declared)
    self.channel = channel
    self.format = format
    self.subject = subject
    self.body = body
    self.variables = variables
  }

  /// Renders for one recipient. `values` holds what is known (subscriber fields, attributes,
  /// overrides); a declared variable without a value uses its default, and without a default the
  /// render fails naming the variable.
  package func render(_ values: [String: String]) throws(SubscriberValidation.Invalid) -> (subject: String, body: String) {
    var context: [String: String] = [:]
    for variable in variables {
      if let value = values[variable.name], !value.isEmpty {
        context[variable.name] = value
      } else if let fallback = variable.defaultValue {
        context[variable.name] = fallback
      } else {
        throw .init(field: "variables.\(variable.name)", message: "variable '\(variable.name)' has no value and no default")
      }
    }
    let parent = RenderContext(values: context)
    return (subjectTemplate.render(parent), bodyTemplate.render(parent))
  }

  /// The declared variables that can only come from the subscriber's attributes (names that are
  /// not its own fields); the relay reads just these.
  package var attributeNames: [String] {
    variables.map(\.name).filter { !Self.subscriberFields.contains($0) }
  }

  /// The values a subscriber supplies: its own fields, then its attributes (strings, numbers and
  /// booleans; other JSON values are not usable as text).
  package static func values(of subscriber: SubscriberRecord) -> [String: String] {
    values(
      id: subscriber.id, email: subscriber.email, phone: subscriber.phone, firstName: subscriber.firstName,
      lastName: subscriber.lastName, attributes: attributes(json: subscriber.attributesJSON))
  }

  /// The usable attributes of a JSON object, as text.
  package static func attributes(json: String) -> [String: String] {
    var attributes: [String: String] = [:]
    if json != "{}", let decoded = try? AttributeText.decoder.decode([String: AttributeText].self, from: Data(json.utf8)) {
      for (key, value) in decoded {
        if let text = value.text { attributes[key] = text }
      }
    }
    return attributes
  }

  /// `attributes`: the usable ones as text (see `AttributeText`); subscriber fields win over them.
  package static func values(
    id: UUID, email: String?, phone: String?, firstName: String, lastName: String, attributes: [String: String]
  ) -> [String: String] {
    var values = attributes
    values["email"] = email ?? ""
    values["phone"] = phone ?? ""
    values["first_name"] = firstName
    values["last_name"] = lastName
    values["subscriber_id"] = id.lowercasedString
    return values
  }

  static func isName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, name.utf8.count <= 100 else { return false }
    let letters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
    let digits = CharacterSet(charactersIn: "0123456789")
    return letters.contains(first) && name.unicodeScalars.allSatisfy { letters.contains($0) || digits.contains($0) }
  }

  static let textPragma = "{{%CONTENT_TYPE:TEXT}}"

  /// Parses with swift-mustache (syntax errors come back with line and column), then checks that
  /// every variable the text uses is declared.
  package static func parse(
    _ text: String, field: String, format: String, declared: Set<String>
  ) throws(SubscriberValidation.Invalid) -> ParsedText {
    for name in try usedNames(text, field: field) where !declared.contains(name) {
      throw .init(
        field: field,
        message: "\(field) uses variable '\(name)' which is not declared; add it to variables (with a default if it may be missing)")
    }
    do {
      // Text output must not be HTML-escaped; the pragma switches swift-mustache's escaping off.
      let mustache = try MustacheTemplate(string: format == "text" ? textPragma + text : text)
      return ParsedText(mustache: mustache, text: text, escapes: format != "text")
    } catch let error as MustacheTemplate.ParserError {
      let line = error.context.lineNumber
      // The pragma this code puts in front shifts the first line's columns.
      let column = error.context.columnNumber - (line == 1 && format == "text" ? textPragma.count : 0)
      throw .init(field: field, message: "\(field) is not a valid template at line \(line), column \(max(column, 1)): \(error.error)")
    } catch {
      throw .init(field: field, message: "\(field) is not a valid template: \(error)")
    }
  }

  /// The variable names of a Mustache text's tags. swift-mustache keeps its tokens internal, so
  /// this reads the tags itself; partials, blocks, delimiter changes and pragmas are refused
  /// (a campaign template is one self-contained text).
  static func usedNames(_ text: String, field: String) throws(SubscriberValidation.Invalid) -> [String] {
    var names: [String] = []
    var rest = Substring(text)
    while let open = rest.range(of: "{{") {
      rest = rest[open.upperBound...]
      let triple = rest.first == "{"
      if triple { rest = rest.dropFirst() }
      guard let close = rest.range(of: triple ? "}}}" : "}}") else {
        throw .init(field: field, message: "\(field) has a '{{' that is never closed")
      }
      var tag = rest[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
      rest = rest[close.upperBound...]
      guard let sigil = tag.first else { throw .init(field: field, message: "\(field) has an empty tag {{}}") }
      switch sigil {
      case "!": continue
      case "#", "^", "/", "&":
        tag = tag.dropFirst().trimmingCharacters(in: .whitespaces)
      case ">", "<", "$", "=", "%":
        throw .init(
          field: field, message: "\(field) uses '{{\(sigil)' (partials, blocks, delimiters, pragmas), which templates do not support")
      default: break
      }
      // A transform such as {{uppercased(first_name)}} names its variable inside the brackets.
      if let openBracket = tag.firstIndex(of: "("), tag.hasSuffix(")") {
        tag = String(tag[tag.index(after: openBracket)..<tag.index(before: tag.endIndex)])
      }
      guard tag != "." else { continue }
      guard isName(tag) else {
        throw .init(field: field, message: "\(field) uses '\(tag)'; variable names are letters, digits and _")
      }
      if !names.contains(tag) { names.append(tag) }
    }
    return names
  }
}

/// The values a template renders with: a concrete type answering swift-mustache's lookups (a
/// dictionary would be found through its generic conformance, a runtime search on every lookup).
package struct RenderContext: MustacheParent {
  package let values: [String: String]

  package init(values: [String: String]) { self.values = values }

  package func child(named name: String) -> Any? { values[name] }
}

/// A parsed text: swift-mustache's template and, when the text is only literal text and plain
/// variable tags (`{{name}}`, `{{{name}}}`, `{{& name}}`), the same as pieces rendered by
/// concatenation. swift-mustache finds and renders every value through runtime casts of `Any`,
/// which was most of a campaign send's render time; anything else (sections, comments,
/// transforms) renders through swift-mustache. Tests hold both to the same output.
package struct ParsedText: Sendable {
  package enum Piece: Sendable {
    case literal(String)
    case value(String, escaped: Bool)
  }

  let mustache: MustacheTemplate
  package let pieces: [Piece]?

  /// `escapes`: whether `{{name}}` is HTML-escaped (the html format; text is not).
  init(mustache: MustacheTemplate, text: String, escapes: Bool) {
    self.mustache = mustache
    self.pieces = Self.pieces(of: text, escapes: escapes)
  }

  package func render(_ context: RenderContext) -> String {
    guard let pieces else { return renderWithMustache(context) }
    var output = ""
    for piece in pieces {
      switch piece {
      case .literal(let text): output += text
      case .value(let name, let escaped):
        let value = context.values[name] ?? ""
        output += escaped ? Self.htmlEscape(value) : value
      }
    }
    return output
  }

  /// The text rendered by swift-mustache, whatever its tags.
  package func renderWithMustache(_ context: RenderContext) -> String { mustache.render(context) }

  static func pieces(of text: String, escapes: Bool) -> [Piece]? {
    // swift-mustache drops spaces and tabs that end the text, and the text pragma in front of a
    // text-format template is a standalone tag that takes a leading blank line with it: such
    // texts are left to swift-mustache.
    let blanks: Set<Character> = [" ", "\t"]
    if let last = text.last, blanks.contains(last) { return nil }
    if !escapes, let newline = text.firstIndex(where: \.isNewline), text[..<newline].allSatisfy(blanks.contains) {
      return nil
    }
    var pieces: [Piece] = []
    var rest = Substring(text)
    while let open = rest.range(of: "{{") {
      if open.lowerBound > rest.startIndex { pieces.append(.literal(String(rest[..<open.lowerBound]))) }
      rest = rest[open.upperBound...]
      let triple = rest.first == "{"
      if triple { rest = rest.dropFirst() }
      guard let close = rest.range(of: triple ? "}}}" : "}}") else { return nil }
      var tag = rest[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
      rest = rest[close.upperBound...]
      var escaped = escapes && !triple
      if !triple, tag.first == "&" {
        tag = tag.dropFirst().trimmingCharacters(in: .whitespaces)
        escaped = false
      }
      guard MessageTemplate.isName(tag) else { return nil }
      pieces.append(.value(tag, escaped: escaped))
    }
    if !rest.isEmpty { pieces.append(.literal(String(rest))) }
    return pieces
  }

  /// swift-mustache's HTML escaping (its own is internal): the same five characters, compared as
  /// Characters as it does.
  static func htmlEscape(_ value: String) -> String {
    guard value.utf8.contains(where: { $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'") })
    else { return value }
    var escaped = ""
    escaped.reserveCapacity(value.utf8.count)
    for character in value {
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

/// SMS length as carriers count it (3GPP TS 23.038).
package enum SMSLength {
  package struct Measure: Sendable, Equatable {
    package var encoding: String
    package var units: Int
    package var segments: Int

    package init(encoding: String, units: Int, segments: Int) {
      self.encoding = encoding
      self.units = units
      self.segments = segments
    }
  }

  static let basic: Set<Unicode.Scalar> = Set(
    ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
      + "abcdefghijklmnopqrstuvwxyzäöñüà").unicodeScalars)
  static let extended: Set<Unicode.Scalar> = Set("^{}\\[~]|€\u{0C}".unicodeScalars)

  package static func measure(_ text: String) -> Measure {
    var septets = 0
    for scalar in text.unicodeScalars {
      if basic.contains(scalar) {
        septets += 1
      } else if extended.contains(scalar) {
        septets += 2
      } else {
        let units = text.utf16.count
        return Measure(encoding: "UCS-2", units: units, segments: units <= 70 ? 1 : (units + 66) / 67)
      }
    }
    return Measure(encoding: "GSM-7", units: septets, segments: septets <= 160 ? 1 : (septets + 152) / 153)
  }
}
