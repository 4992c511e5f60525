import Foundation

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
