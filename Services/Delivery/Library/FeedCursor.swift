/// A position in the event feed: the writing transaction's id and the event's id.
package struct FeedCursor: Sendable, Equatable {
  package var transaction: UInt64
  package var event: Int64

  package static let start = FeedCursor(transaction: 0, event: 0)

  package init(transaction: UInt64, event: Int64) {
    self.transaction = transaction
    self.event = event
  }

  /// "transaction.event"; empty means the start.
  package init?(_ text: String) {
    if text.isEmpty {
      self = .start
      return
    }
    let parts = text.split(separator: ".")
    guard parts.count == 2, let transaction = UInt64(parts[0]), let event = Int64(parts[1]) else { return nil }
    self.init(transaction: transaction, event: event)
  }

  package var text: String { self == .start ? "" : "\(transaction).\(event)" }
}
