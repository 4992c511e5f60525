/// One check: a descriptor set (sorted by key, real values) and its hits.
package struct Check: Sendable {
  package let descriptors: [(key: String, value: String)]
  package let hits: Int64
  /// The counter's key, e.g. `domain=gmail.com,provider=smtp-primary`; also what owners hash.
  package let key: String

  package init(descriptors: [(key: String, value: String)], hits: Int64) {
    self.descriptors = descriptors
    self.hits = hits
    self.key = LimitDefinition.canonicalKey(descriptors)
  }
}
