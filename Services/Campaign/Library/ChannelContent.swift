import Foundation
import HeraldCore

/// What a push template carries besides its title (subject) and text (body), and the approved
/// WhatsApp template a WhatsApp template sends: stored with the template (`templates.content`).
package struct ChannelContent: Sendable, Equatable, Codable {
  package struct Push: Sendable, Equatable, Codable {
    /// Custom keys for the app; string values may use the template's variables.
    package var data: [String: JSONValue]
    /// A URL the app opens (may use the template's variables); empty: none.
    package var deepLink: String

    package init(data: [String: JSONValue] = [:], deepLink: String = "") {
      self.data = data
      self.deepLink = deepLink
    }

    enum CodingKeys: String, CodingKey {
      case data
      case deepLink = "deep_link"
    }
  }

  /// A template approved in WhatsApp Manager: its name, language and the body's parameters in
  /// order (Mustache text each).
  package struct WhatsApp: Sendable, Equatable, Codable {
    package var templateName: String
    package var language: String
    package var parameters: [String]

    package init(templateName: String, language: String, parameters: [String]) {
      self.templateName = templateName
      self.language = language
      self.parameters = parameters
    }

    enum CodingKeys: String, CodingKey {
      case parameters, language
      case templateName = "template_name"
    }
  }

  package var push: Push?
  package var whatsapp: WhatsApp?

  package init(push: Push? = nil, whatsapp: WhatsApp? = nil) {
    self.push = push
    self.whatsapp = whatsapp
  }

  package var isEmpty: Bool { push == nil && whatsapp == nil }

  /// The placeholders {{1}}, {{2}}... of an approved WhatsApp body, in the order they appear.
  static func placeholders(in body: String) -> [Int] {
    body.matches(of: /\{\{\s*([0-9]{1,2})\s*\}\}/).compactMap { Int($0.output.1) }
  }

  /// The approved body with its placeholders filled in.
  static func fill(_ body: String, with parameters: [String]) -> String {
    body.replacing(/\{\{\s*([0-9]{1,2})\s*\}\}/) { match in
      guard let number = Int(match.output.1), parameters.indices.contains(number - 1) else { return String(match.output.0) }
      return parameters[number - 1]
    }
  }
}
