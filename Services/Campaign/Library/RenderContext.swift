import Mustache

/// The values a template renders with: a concrete type answering swift-mustache's lookups (a
/// dictionary would be found through its generic conformance, a runtime search on every lookup).
package struct RenderContext: MustacheParent {
  package let values: [String: String]

  package init(values: [String: String]) { self.values = values }

  package func child(named name: String) -> Any? { values[name] }
}
