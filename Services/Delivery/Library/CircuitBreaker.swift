import Foundation
import HeraldServerKit
import Synchronization

/// A circuit breaker of one provider in this process: closed → open when the failure rate over
/// the window passes the policy's → half-open after `openFor`, letting probes through → closed on
/// a probe's success, open again on its failure.
package final class CircuitBreaker: Sendable {
  package enum State: String, Sendable {
    case closed, open
    case halfOpen = "half_open"
  }

  package struct Snapshot: Sendable, Equatable {
    package var state: State
    package var errorRate: Double
    package var attemptsInWindow: Int
    package var averageLatencyMilliseconds: Double
    package var lastError: String?
    package var openedAt: Date?
    package var sent: Int64
    package var failed: Int64
  }

  private struct Outcome {
    var at: ContinuousClock.Instant
    var success: Bool
    var latency: Duration
  }

  private struct Storage {
    var state: State = .closed
    /// Outcomes in the window, oldest first from `head` (pruning moves `head`; the array is
    /// compacted now and then), with running totals so every call is O(1) amortised.
    var outcomes: [Outcome] = []
    var head = 0
    var failuresInWindow = 0
    var latencyInWindow: Duration = .zero
    var attemptsInWindow: Int { outcomes.count - head }
    var openedAt: ContinuousClock.Instant?
    var openedAtDate: Date?
    var probesInFlight = 0
    var lastError: String?
    var sent: Int64 = 0
    var failed: Int64 = 0
  }

  package let policy: BreakerPolicy
  private let storage = Mutex(Storage())

  package init(policy: BreakerPolicy = BreakerPolicy()) {
    self.policy = policy
  }

  /// Whether the breaker is closed (sends go through without probing), without changing it.
  package var isClosed: Bool { storage.withLock { $0.state == .closed } }

  /// Whether a send may go to this provider now. A `true` while half-open is a probe and must be
  /// followed by `record`.
  package func admit(now: ContinuousClock.Instant = .now) -> Bool {
    storage.withLock { storage in
      switch storage.state {
      case .closed:
        return true
      case .open:
        guard let opened = storage.openedAt, now >= opened.advanced(by: policy.openFor) else { return false }
        storage.state = .halfOpen
        storage.probesInFlight = 1
        return true
      case .halfOpen:
        guard storage.probesInFlight < policy.halfOpenProbes else { return false }
        storage.probesInFlight += 1
        return true
      }
    }
  }

  package func record(success: Bool, latency: Duration, error: String? = nil, now: ContinuousClock.Instant = .now) {
    storage.withLock { storage in
      if success { storage.sent += 1 } else { storage.failed += 1 }
      if let error { storage.lastError = error }
      append(&storage, Outcome(at: now, success: success, latency: latency))
      prune(&storage, now: now)
      switch storage.state {
      case .halfOpen:
        storage.probesInFlight = max(0, storage.probesInFlight - 1)
        if success {
          storage.state = .closed
          storage.outcomes = []
          storage.head = 0
          storage.failuresInWindow = 0
          storage.latencyInWindow = .zero
          append(&storage, Outcome(at: now, success: true, latency: latency))
          storage.openedAt = nil
          storage.openedAtDate = nil
        } else {
          open(&storage, now: now)
        }
      case .closed:
        if storage.attemptsInWindow >= policy.minimumAttempts,
          Double(storage.failuresInWindow) / Double(storage.attemptsInWindow) >= policy.failureRate
        {
          open(&storage, now: now)
        }
      case .open:
        break  // a send admitted before the breaker opened
      }
    }
  }

  /// A half-open probe that was admitted but not sent (e.g. the budget stopped it).
  package func release() {
    storage.withLock { storage in
      if storage.state == .halfOpen { storage.probesInFlight = max(0, storage.probesInFlight - 1) }
    }
  }

  package func snapshot(now: ContinuousClock.Instant = .now) -> Snapshot {
    storage.withLock { storage in
      prune(&storage, now: now)
      let attempts = storage.attemptsInWindow
      let failures = storage.failuresInWindow
      let latency = storage.latencyInWindow
      var state = storage.state
      if state == .open, let opened = storage.openedAt, now >= opened.advanced(by: policy.openFor) { state = .halfOpen }
      return Snapshot(
        state: state, errorRate: attempts == 0 ? 0 : Double(failures) / Double(attempts), attemptsInWindow: attempts,
        averageLatencyMilliseconds: attempts == 0 ? 0 : latency.milliseconds / Double(attempts),
        lastError: storage.lastError, openedAt: storage.openedAtDate, sent: storage.sent, failed: storage.failed)
    }
  }

  private func open(_ storage: inout Storage, now: ContinuousClock.Instant) {
    storage.state = .open
    storage.openedAt = now
    storage.openedAtDate = Date()
    storage.probesInFlight = 0
  }

  private func append(_ storage: inout Storage, _ outcome: Outcome) {
    storage.outcomes.append(outcome)
    if !outcome.success { storage.failuresInWindow += 1 }
    storage.latencyInWindow += outcome.latency
  }

  private func prune(_ storage: inout Storage, now: ContinuousClock.Instant) {
    let oldest = now.advanced(by: .zero - policy.window)
    while storage.head < storage.outcomes.count, storage.outcomes[storage.head].at < oldest {
      let outcome = storage.outcomes[storage.head]
      if !outcome.success { storage.failuresInWindow -= 1 }
      storage.latencyInWindow -= outcome.latency
      storage.head += 1
    }
    if storage.head > 1024, storage.head * 2 > storage.outcomes.count {
      storage.outcomes.removeFirst(storage.head)
      storage.head = 0
    }
  }
}
