/// What a batch write did: ids created and updated, and the records the table refused (by their
/// position in the input) with the table's reason.
package struct WriteOutcome: Sendable, Equatable {
  package var created: [String] = []
  package var updated: [String] = []
  package var refused: [(position: Int, reason: String)] = []

  package static func == (lhs: WriteOutcome, rhs: WriteOutcome) -> Bool {
    lhs.created == rhs.created && lhs.updated == rhs.updated
      && lhs.refused.map(\.position) == rhs.refused.map(\.position) && lhs.refused.map(\.reason) == rhs.refused.map(\.reason)
  }
}
