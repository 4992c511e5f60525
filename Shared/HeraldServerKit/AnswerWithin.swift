import ServiceLifecycle
import Synchronization

/// Runs `body` and answers within `limit` whatever it does: after `limit` (or when the caller is
/// cancelled) it fails with `TimeoutError` (or `CancellationError`) and leaves `body` behind,
/// cancelled, to end whenever it can. For calls that may ignore cancellation, such as a query on
/// a connection whose server stopped answering, where `withTimeout` would wait for them.
package func answerWithin<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
  try await firstToFinish(
    body,
    {
      try? await Task.sleep(for: limit)
      throw TimeoutError(limit: limit)
    })
}

/// The answer of whichever of `first` and `second` ends first; the other is cancelled (unless
/// `cancelFirst` is false and it is `first` that lost) and left behind, unawaited, to end whenever
/// it can (unlike a task group, which waits for it).
package func firstToFinish<T: Sendable>(
  cancelFirst: Bool = true, _ first: @escaping @Sendable () async throws -> T, _ second: @escaping @Sendable () async throws -> T
) async throws -> T {
  let race = Race<T>()
  let tasks = [first, second].map { body in
    Task {
      do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
    }
  }
  defer {
    if cancelFirst { tasks[0].cancel() }
    tasks[1].cancel()
  }
  return try await withTaskCancellationHandler {
    try await withCheckedThrowingContinuation { race.wait($0) }
  } onCancel: {
    race.finish(.failure(CancellationError()))
  }
}

/// Runs start-up work that graceful shutdown interrupts: the work is cancelled when shutdown
/// begins and, if it still has not ended `abandonAfter` later (a query on a connection whose
/// server stopped answering ignores cancellation), left behind. True when the work finished,
/// false when shutdown stopped it; its own errors are thrown.
package func unlessShutDown(
  abandonAfter: Duration = .seconds(5), _ work: @escaping @Sendable () async throws -> Void
) async throws -> Bool {
  do {
    return try await firstToFinish(
      {
        try await cancelWhenGracefulShutdown { try await work() }
        return true
      },
      {
        try await gracefulShutdown()
        try await Task.sleep(for: abandonAfter)
        return false
      })
  } catch  where Task.isShuttingDownGracefully {
    return false
  }
}

/// The first result wins; it reaches the waiter whether it comes before or after the wait begins.
private final class Race<T: Sendable>: Sendable {
  private enum State {
    case pending
    case waiting(CheckedContinuation<T, any Error>)
    case finished(Result<T, any Error>)
    case answered
  }
  private let state = Mutex(State.pending)

  func wait(_ continuation: CheckedContinuation<T, any Error>) {
    let ready: Result<T, any Error>? = state.withLock { state in
      if case .finished(let result) = state {
        state = .answered
        return result
      }
      state = .waiting(continuation)
      return nil
    }
    if let ready { continuation.resume(with: ready) }
  }

  func finish(_ result: Result<T, any Error>) {
    let waiter: CheckedContinuation<T, any Error>? = state.withLock { state in
      switch state {
      case .pending:
        state = .finished(result)
        return nil
      case .waiting(let continuation):
        state = .answered
        return continuation
      case .finished, .answered:
        return nil
      }
    }
    waiter?.resume(with: result)
  }
}
