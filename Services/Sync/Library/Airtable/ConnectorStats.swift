import Synchronization

/// Counts of one connector's calls (for a run's history).
package final class ConnectorStats: Sendable {
  private let counts = Mutex((calls: 0, rateLimited: 0, iteratorRestarts: 0))
  package init() {}
  package var calls: Int { counts.withLock { $0.calls } }
  package var rateLimited: Int { counts.withLock { $0.rateLimited } }
  package var iteratorRestarts: Int { counts.withLock { $0.iteratorRestarts } }
  func call() { counts.withLock { $0.calls += 1 } }
  func limited() { counts.withLock { $0.rateLimited += 1 } }
  func restarted() { counts.withLock { $0.iteratorRestarts += 1 } }
}
