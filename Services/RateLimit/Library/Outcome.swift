/// The outcome of one check decided here.
package struct Outcome: Sendable, Equatable {
  /// nil: no limit matched (allowed, unlimited).
  package var limit: LimitDefinition?
  package var decision: Decision?

  package var allowed: Bool { decision?.allowed ?? true }
}
