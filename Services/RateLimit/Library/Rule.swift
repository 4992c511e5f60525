/// What one limit allows at a given moment (a warm-up limit's volume depends on the day).
package struct Rule: Sendable, Equatable {
  package var algorithm: LimitDefinition.Algorithm
  /// Requests per unit (the bucket's refill per unit, or the window's cap).
  package var limit: Int64
  /// Token bucket: the bucket's size.
  package var burst: Int64
  /// The unit in seconds.
  package var unit: Double

  package init(algorithm: LimitDefinition.Algorithm, limit: Int64, burst: Int64, unit: Double) {
    self.algorithm = algorithm
    self.limit = limit
    self.burst = burst
    self.unit = unit
  }
}
