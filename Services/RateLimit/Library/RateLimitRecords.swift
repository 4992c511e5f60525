import Foundation

/// A live replica as the members table shows it.
package struct MemberInfo: Sendable, Equatable {
  package var id: String
  package var address: String
  package var startedAt: Date
  package var heartbeatAt: Date
}

/// An hour or day counter as its owner saves it: the counter's key, the limit it follows and its
/// state.
package struct SavedCounter: Sendable, Equatable {
  package var key: String
  package var limitKey: String
  package var state: CounterState
}
