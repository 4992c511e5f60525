import Mustache

/// The values a template renders with: a concrete type answering swift-mustache's lookups (a
/// dictionary would be found through its generic conformance, a runtime search on every lookup).
/// With `nesting`, a dotted name ("inbound.text") is reached through a child context ("inbound",
/// then "text"), as swift-mustache looks dotted names up (campaign sends do without the work).
package struct RenderContext: MustacheParent {
  package let values: [String: String]
  let nested: [String: RenderContext]

  package init(values: [String: String], nesting: Bool = false) {
    self.values = values
    guard nesting else {
      nested = [:]
      return
    }
    var groups: [String: [String: String]] = [:]
    for (name, value) in values {
      guard let dot = name.firstIndex(of: ".") else { continue }
      groups[String(name[..<dot]), default: [:]][String(name[name.index(after: dot)...])] = value
    }
    self.nested = groups.mapValues { RenderContext(values: $0) }
  }

  package func child(named name: String) -> Any? { values[name] ?? nested[name] }
}
