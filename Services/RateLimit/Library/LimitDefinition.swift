import Foundation

/// A limit over a set of descriptors, e.g. `domain=*,provider=smtp-primary`. A value `*` matches
/// any value, and each value gets its own counter.
package struct LimitDefinition: Sendable, Equatable {
  package enum Unit: String, Sendable, CaseIterable {
    case second, minute, hour, day

    package var seconds: Double {
      switch self {
      case .second: 1
      case .minute: 60
      case .hour: 3600
      case .day: 86400
      }
    }

    /// Hour and day counters are written to the database so a restart does not reset them.
    package var isPersisted: Bool { self == .hour || self == .day }
  }

  package enum Algorithm: String, Sendable, CaseIterable {
    case tokenBucket = "token_bucket"
    case slidingWindow = "sliding_window"
    case fixedWindow = "fixed_window"
  }

  /// Descriptors sorted by key; keys are unique.
  package var descriptors: [(key: String, value: String)]
  package var requestsPerUnit: Int64
  package var unit: Unit
  package var algorithm: Algorithm
  package var burst: Int64
  package var warmup: Warmup?
  package var updatedAt: Date?

  package var key: String { Self.canonicalKey(descriptors) }

  /// What the limit allows at `now`.
  package func rule(at now: Double) -> Rule {
    if let warmup {
      return Rule(algorithm: .fixedWindow, limit: warmup.volume(at: now), burst: 0, unit: Unit.day.seconds)
    }
    return Rule(algorithm: algorithm, limit: requestsPerUnit, burst: burst, unit: unit.seconds)
  }

  package static func canonicalKey(_ descriptors: [(key: String, value: String)]) -> String {
    descriptors.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
  }

  /// Parses a canonical key back into descriptors (keys and values never hold `=` or `,`).
  package static func descriptors(fromKey key: String) -> [(key: String, value: String)] {
    key.split(separator: ",").map { pair in
      let parts = pair.split(separator: "=", maxSplits: 1)
      return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }
  }

  package static func == (lhs: Self, rhs: Self) -> Bool {
    lhs.key == rhs.key && lhs.requestsPerUnit == rhs.requestsPerUnit && lhs.unit == rhs.unit
      && lhs.algorithm == rhs.algorithm && lhs.burst == rhs.burst && lhs.warmup == rhs.warmup
  }
}
