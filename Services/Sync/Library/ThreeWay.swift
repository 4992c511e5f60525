import Foundation
import HeraldCore

/// The three-way comparison of one field: each side against its value at the last sync.
enum ThreeWay {
  /// Compares a field against its last synced values (SPEC §5). `remoteTime` is the record's
  /// last-modified time (nil when the table has none: the run saw the change just now) and
  /// `localTime` the subscriber's last update, for last-writer-wins.
  static func decide(_ state: FieldState, policy: ConflictPolicy, remoteTime: Date?, localTime: Date?) -> FieldDecision {
    if SubscriberField.equivalent(state.local, state.remote, field: state.field) { return .inSync }
    let remoteChanged = state.lastRemote.map { !SubscriberField.equivalent($0, state.remote, field: state.field) } ?? true
    let localChanged = state.lastLocal.map { !SubscriberField.equivalent($0, state.local, field: state.field) } ?? true
    switch (remoteChanged, localChanged) {
    case (false, false): return .inSync
    case (true, false): return .takeRemote
    case (false, true): return .keepLocal
    case (true, true):
      // First sight of a record: an empty side is not a change to defend.
      if state.lastLocal == nil && state.local == .null { return .takeRemote }
      if state.lastRemote == nil && state.remote == .null { return .keepLocal }
      switch policy {
      case .remoteWins: return .conflict(winner: "remote")
      case .localWins: return .conflict(winner: "local")
      case .manual: return .conflict(winner: "pending")
      case .lastWriterWins:
        let remote = remoteTime ?? Date()
        return .conflict(winner: (localTime ?? .distantPast) > remote ? "local" : "remote")
      }
    }
  }
}

/// The values of one field on both sides, and as they were at the last sync.
struct FieldState: Equatable {
  var field: String
  var local: JSONValue
  var remote: JSONValue
  /// nil: never synced (a record seen for the first time).
  var lastLocal: JSONValue?
  var lastRemote: JSONValue?
}

/// What a three-way comparison decides for one field.
enum FieldDecision: Equatable {
  /// Neither side changed, or both changed to the same value.
  case inSync
  /// Take the remote value locally.
  case takeRemote
  /// The local value is newer: keep it (and write it to the remote table when the job pushes).
  case keepLocal
  /// Both changed: the policy chose a side (`winner` is "local" or "remote"), or left it for
  /// review ("pending").
  case conflict(winner: String)
}
