extension AsyncSequence {
  /// Every element, in order (e.g. the decoded rows of a query).
  package func elements() async throws -> [Element] {
    var elements: [Element] = []
    for try await element in self { elements.append(element) }
    return elements
  }
}
