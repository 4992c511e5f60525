/// The answer for one counter.
package struct Decision: Sendable, Equatable {
  package var allowed: Bool
  package var limit: Int64
  package var remaining: Int64
  /// When the counter is back to its full limit (seconds since 1970).
  package var resetAt: Double
  /// Not allowed: seconds until these hits would fit (if nothing else is taken meanwhile).
  package var retryAfter: Double
}
