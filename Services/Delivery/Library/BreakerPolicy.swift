/// When a provider's breaker opens and for how long.
package struct BreakerPolicy: Sendable, Equatable {
  /// Outcomes older than this are forgotten.
  package var window: Duration = .seconds(30)
  /// Opens when failures / attempts over the window reach this...
  package var failureRate: Double = 0.5
  /// ...and the window holds at least this many attempts.
  package var minimumAttempts = 5
  /// Stays open this long, then lets probes through (half-open).
  package var openFor: Duration = .seconds(15)
  /// Probes allowed at once while half-open.
  package var halfOpenProbes = 1

  package init(
    window: Duration = .seconds(30), failureRate: Double = 0.5, minimumAttempts: Int = 5, openFor: Duration = .seconds(15),
    halfOpenProbes: Int = 1
  ) {
    self.window = window
    self.failureRate = failureRate
    self.minimumAttempts = minimumAttempts
    self.openFor = openFor
    self.halfOpenProbes = halfOpenProbes
  }
}
