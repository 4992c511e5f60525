import Foundation
import HeraldCore
import Mustache

/// A checked template: Mustache text (parsed by swift-mustache) whose every variable is declared.
package struct MessageTemplate: Sendable {
  package static let channels: Set<String> = ["email", "sms", "push", "whatsapp"]
  /// Variables filled from the subscriber's own fields; any other name comes from its attributes.
  package static let subscriberFields: Set<String> = ["email", "phone", "first_name", "last_name", "subscriber_id"]
  /// Variables Herald fills for each message of a campaign: the recipient's unsubscribe link and
  /// preference page (the same page, `/u/TOKEN`).
  package static let linkFields: Set<String> = ["unsubscribe_url", "preferences_url"]

  package var channel: String
  package var format: String
  package var subject: String
  package var body: String
  package var variables: [TemplateVariable]
  /// Names Herald fills itself (given to `render` in `values`).
  package let builtIns: Set<String>
  /// Whether the body shows the recipient a way out: it uses `{{unsubscribe_url}}` or
  /// `{{preferences_url}}` (CAN-SPAM asks for a visible opt-out in every commercial e-mail).
  package let showsOptOut: Bool
  /// Push: data and deep link; WhatsApp: the approved template it sends (its body is then the
  /// approved text with {{1}}, {{2}}..., not Mustache).
  package let content: ChannelContent
  private let subjectTemplate: ParsedText
  private let bodyTemplate: ParsedText?
  private let deepLinkTemplate: ParsedText?
  private let dataTemplates: [String: ParsedText]
  private let parameterTemplates: [ParsedText]

  /// Push titles, texts and free WhatsApp texts as written: what the services show and take.
  package static let pushTitleLimit = 256
  package static let pushBodyLimit = 2000
  package static let whatsAppTextLimit = 4096
  package static let whatsAppTemplateBodyLimit = 1024

  /// Checks a template as it is saved; the error names the field and, for a variable, its name.
  /// `builtIns`: names Herald fills itself, declared without being listed, dotted ones included
  /// (an auto-response's `inbound.text`).
  package init(
    channel: String, format: String, subject: String, body: String, variables: [TemplateVariable], builtIns: Set<String> = [],
    content: ChannelContent = ChannelContent()
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
    } else if channel == "push" {
      guard !subject.contains(where: \.isNewline), subject.count <= Self.pushTitleLimit else {
        throw .init(
          field: "subject", message: "subject (a push notification's title) must be one line of at most \(Self.pushTitleLimit) characters")
      }
    } else if !subject.isEmpty {
      throw .init(field: "subject", message: "subject is for e-mail templates and push titles only")
    }
    if content.push != nil && channel != "push" { throw .init(field: "push", message: "push is for push templates only") }
    if content.whatsapp != nil && channel != "whatsapp" {
      throw .init(field: "whatsapp", message: "whatsapp is for whatsapp templates only")
    }
    switch channel {
    case "push" where body.count > Self.pushBodyLimit:
      throw .init(field: "body", message: "body (a push notification's text) is \(body.count) characters; at most \(Self.pushBodyLimit)")
    case "whatsapp" where content.whatsapp == nil && body.count > Self.whatsAppTextLimit:
      throw .init(field: "body", message: "body is \(body.count) characters; a WhatsApp text takes at most \(Self.whatsAppTextLimit)")
    default: break
    }

    var declared = builtIns
    for (index, variable) in variables.enumerated() {
      let field = "variables[\(index)].name"
      guard Self.isName(variable.name) else {
        throw .init(field: field, message: "variable name '\(variable.name)' must be letters, digits and _ (not starting with a digit)")
      }
      guard declared.insert(variable.name).inserted else {
        throw .init(field: field, message: "variable '\(variable.name)' is declared twice")
      }
      if ["push", "whatsapp"].contains(channel), Self.linkFields.contains(variable.name) {
        throw .init(
          field: field,
          message:
            "\(channel) messages carry no unsubscribe link ('\(variable.name)'): people turn notifications off on the device, or write STOP on WhatsApp"
        )
      }
    }

    self.subjectTemplate = try Self.parse(subject, field: "subject", format: "text", declared: declared)
    var deepLinkTemplate: ParsedText?
    var dataTemplates: [String: ParsedText] = [:]
    var parameterTemplates: [ParsedText] = []
    if let whatsapp = content.whatsapp {
      guard whatsapp.templateName.wholeMatch(of: /[a-z0-9_]{1,512}/) != nil else {
        throw .init(
          field: "whatsapp.template_name",
          message: "whatsapp.template_name must be the approved template's name: lower-case letters, digits and _")
      }
      guard whatsapp.language.wholeMatch(of: /[a-z]{2,3}(_[A-Z]{2})?/) != nil else {
        throw .init(
          field: "whatsapp.language", message: "whatsapp.language '\(whatsapp.language)' must be a language code such as en_US or de")
      }
      guard body.count <= Self.whatsAppTemplateBodyLimit else {
        throw .init(
          field: "body",
          message:
            "body (the approved template's text) is \(body.count) characters; WhatsApp takes at most \(Self.whatsAppTemplateBodyLimit)")
      }
      // The body is the approved text: its placeholders are numbers, its values the parameters.
      let used = ChannelContent.placeholders(in: body)
      let withoutPlaceholders = body.replacing(/\{\{\s*[0-9]{1,2}\s*\}\}/, with: "")
      guard !withoutPlaceholders.contains("{{") else {
        throw .init(
          field: "body",
          message:
            "body of a WhatsApp template is its approved text with {{1}}, {{2}}... where the parameters go; put variables such as {{first_name}} in whatsapp.parameters"
        )
      }
      let highest = used.max() ?? 0
      guard whatsapp.parameters.count <= 20 else {
        throw .init(field: "whatsapp.parameters", message: "whatsapp.parameters holds \(whatsapp.parameters.count); at most 20")
      }
      for number in 1...max(highest, 1) where number <= highest {
        guard whatsapp.parameters.indices.contains(number - 1) else {
          throw .init(
            field: "whatsapp.parameters[\(number - 1)]",
            message: "whatsapp.parameters[\(number - 1)] is missing: the approved body uses {{\(number)}}")
        }
      }
      for (index, parameter) in whatsapp.parameters.enumerated() {
        let field = "whatsapp.parameters[\(index)]"
        guard index < highest else {
          throw .init(field: field, message: "\(field) has no {{\(index + 1)}} in the approved body")
        }
        guard !parameter.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, parameter.count <= 1024 else {
          throw .init(field: field, message: "\(field) must be 1 to 1,024 characters: WhatsApp refuses an empty parameter")
        }
        parameterTemplates.append(try Self.parse(parameter, field: field, format: "text", declared: declared))
      }
      self.bodyTemplate = nil
      self.showsOptOut = false
    } else {
      self.bodyTemplate = try Self.parse(body, field: "body", format: format, declared: declared)
      self.showsOptOut = !Set(try Self.usedNames(body, field: "body", dotted: declared)).isDisjoint(with: Self.linkFields)
    }
    if let push = content.push {
      for (key, value) in push.data {
        guard !PushData.isReservedKey(key) else {
          throw .init(field: "push.data_json", message: "push.data_json may not use the key '\(key)' (the platforms or Herald use it)")
        }
        if case .string(let text) = value {
          dataTemplates[key] = try Self.parse(text, field: "push.data_json.\(key)", format: "text", declared: declared)
        }
      }
      if !push.deepLink.isEmpty {
        guard push.deepLink.count <= 2048, !push.deepLink.contains(where: { $0.isWhitespace || $0.isNewline }) else {
          throw .init(field: "push.deep_link", message: "push.deep_link must be a URL of at most 2,048 characters without spaces")
        }
        deepLinkTemplate = try Self.parse(push.deepLink, field: "push.deep_link", format: "text", declared: declared)
      }
    }
    self.deepLinkTemplate = deepLinkTemplate
    self.dataTemplates = dataTemplates
    self.parameterTemplates = parameterTemplates
    self.content = content
    self.builtIns = builtIns
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
    let parent = try context(values)
    guard let bodyTemplate else {
      // An approved WhatsApp template: its text with the parameters filled in.
      return (subjectTemplate.render(parent), ChannelContent.fill(body, with: parameterTemplates.map { $0.render(parent) }))
    }
    return (subjectTemplate.render(parent), bodyTemplate.render(parent))
  }

  /// What a push or WhatsApp template's message carries besides subject and body, rendered.
  package struct RenderedContent: Sendable, Equatable {
    package var data: [String: JSONValue] = [:]
    package var deepLink: String?
    package var parameters: [String] = []
  }

  package func renderContent(_ values: [String: String]) throws(SubscriberValidation.Invalid) -> RenderedContent {
    guard !content.isEmpty else { return RenderedContent() }
    let parent = try context(values)
    var rendered = RenderedContent()
    if let push = content.push {
      rendered.data = push.data
      for (key, template) in dataTemplates { rendered.data[key] = .string(template.render(parent)) }
      rendered.deepLink = deepLinkTemplate?.render(parent)
    }
    rendered.parameters = parameterTemplates.map { $0.render(parent) }
    for (index, parameter) in rendered.parameters.enumerated() where parameter.trimmingCharacters(in: .whitespaces).isEmpty {
      throw .init(field: "whatsapp.parameters[\(index)]", message: "whatsapp.parameters[\(index)] renders empty, which WhatsApp refuses")
    }
    return rendered
  }

  /// The values the texts are rendered with: each declared variable's (or its default), and the
  /// built-ins.
  private func context(_ values: [String: String]) throws(SubscriberValidation.Invalid) -> RenderContext {
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
    for name in builtIns { context[name] = values[name] ?? "" }
    return RenderContext(values: context, nesting: !builtIns.isEmpty)
  }

  /// The declared variables that can only come from the subscriber's attributes (names that are
  /// not its own fields); the relay reads just these.
  package var attributeNames: [String] {
    variables.map(\.name).filter { !Self.subscriberFields.contains($0) && !Self.linkFields.contains($0) }
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
    for name in try usedNames(text, field: field, dotted: declared) where !declared.contains(name) {
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
  static func usedNames(_ text: String, field: String, dotted: Set<String> = []) throws(SubscriberValidation.Invalid) -> [String] {
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
      guard isName(tag) || dotted.contains(tag) && tag.contains(".") else {
        throw .init(field: field, message: "\(field) uses '\(tag)'; variable names are letters, digits and _")
      }
      if !names.contains(tag) { names.append(tag) }
    }
    return names
  }
}
