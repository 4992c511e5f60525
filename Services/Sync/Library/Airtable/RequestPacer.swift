import Synchronization

/// Keeps requests to one base within `perSecond` in any one-second window, across every client in
/// the process (Airtable's limit is per base). A request holds a slot from when it is sent until a
/// second after its answer came back, so however late an earlier request reached the server, no
/// later one lands in the same second with too many others.
package final class RequestPacer: Sendable {
  private struct State {
    var inFlight = 0
    var finished: [ContinuousClock.Instant] = []
    var pausedUntil: ContinuousClock.Instant?
  }

  private let limit: Int
  private let window: Duration = .milliseconds(1020)
  private let state = Mutex(State())
  private static let shared = Mutex([String: RequestPacer]())

  package init(perSecond: Int) {
    limit = max(1, perSecond)
  }

  /// The process-wide pacer of a base.
  package static func forBase(_ key: String, perSecond: Int) -> RequestPacer {
    shared.withLock { pacers in
      // One pacer per base: clients asking for different rates share the lowest.
      if let pacer = pacers[key], pacer.limit <= max(1, perSecond) { return pacer }
      let pacer = RequestPacer(perSecond: perSecond)
      pacers[key] = pacer
      return pacer
    }
  }

  /// Waits for a free slot and takes it; `release()` when the answer is in.
  package func acquire() async throws {
    while true {
      let wake: ContinuousClock.Instant? = state.withLock { state in
        let now = ContinuousClock.now
        if let paused = state.pausedUntil, now < paused { return paused }
        state.finished.removeAll { $0.advanced(by: window) <= now }
        if state.inFlight + state.finished.count < limit {
          state.inFlight += 1
          return nil
        }
        return state.finished.min().map { $0.advanced(by: window) } ?? now.advanced(by: .milliseconds(20))
      }
      guard let wake else { return }
      try await Task.sleep(until: wake, clock: .continuous)
    }
  }

  /// No request starts for `duration` (the base answered 429).
  package func pause(for duration: Duration) {
    state.withLock { state in
      let until = ContinuousClock.now.advanced(by: duration)
      state.pausedUntil = max(state.pausedUntil ?? until, until)
    }
  }

  package func release() {
    state.withLock { state in
      state.inFlight -= 1
      state.finished.append(ContinuousClock.now)
    }
  }
}
