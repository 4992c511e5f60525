import Logging
import ServiceLifecycle
import Synchronization

/// Runs `body` and answers within `limit` whatever it does: after `limit` (or when the caller is
/// cancelled) it fails with `TimeoutError` (or `CancellationError`) and leaves `body` behind,
/// cancelled, to end whenever it can. For calls that may ignore cancellation, such as a query on
/// a connection whose server stopped answering, which a task group would wait for.
package func answerWithin<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
  try await firstToFinish(
    body,
    {
      try? await Task.sleep(for: limit)
      throw TimeoutError(limit: limit)
    })
}

/// `answerWithin` found no answer in time.
package struct TimeoutError: Error, CustomStringConvertible {
  package var limit: Duration
  package var description: String { "no answer within \(limit)" }
}

/// The answer of whichever of `first` and `second` ends first; the other is cancelled and left
/// behind, unawaited, to end whenever it can (unlike a task group, which waits for it).
package func firstToFinish<T: Sendable>(
  _ first: @escaping @Sendable () async throws -> T, _ second: @escaping @Sendable () async throws -> T
) async throws -> T {
  let race = Race<T>()
  let tasks = [first, second].map { body in
    Task {
      do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
    }
  }
  defer { for task in tasks { task.cancel() } }
  return try await withTaskCancellationHandler {
    try await withCheckedThrowingContinuation { race.wait($0) }
  } onCancel: {
    race.finish(.failure(CancellationError()))
  }
}

/// How work that graceful shutdown ends is given up, counted from the moment shutdown begins.
package struct ShutdownEscalation: Sendable {
  /// When the work is cancelled; nil: never (the gRPC server: cancelling its serving task with
  /// connections open traps in NIO).
  package var cancelAfter: Duration?
  /// When the work is left behind, unawaited, so that the process can exit: what still runs then
  /// is stuck in a call that ignores cancellation (a query on a connection whose server stopped
  /// answering).
  package var abandonAfter: Duration

  /// Start-up (migrations, waiting for the database or dependencies): cancelled at once.
  package static let startUp = ShutdownEscalation(cancelAfter: .zero, abandonAfter: .seconds(5))
  /// Background workers: 10 s to finish what they are doing, then cancelled.
  package static let workers = ShutdownEscalation(cancelAfter: .seconds(10), abandonAfter: .seconds(15))
  /// The gRPC server: 10 s for the RPCs in flight.
  package static let server = ShutdownEscalation(cancelAfter: nil, abandonAfter: .seconds(10))
}

/// Runs `work` until it ends; once graceful shutdown begins, `escalation` says when it is
/// cancelled and when it is left behind. True when the work ended, false when shutdown ended the
/// wait for it; the work's own errors are thrown (those of a work shutdown stopped are not).
package func untilShutdown(
  _ what: String, _ escalation: ShutdownEscalation, logger: Logger, _ work: @escaping @Sendable () async throws -> Void
) async throws -> Bool {
  let race = Race<Bool>()
  let task = Task {
    do {
      try await work()
      race.finish(.success(true))
    } catch {
      race.finish(.failure(error))
    }
  }
  let escalating = Task {
    try await gracefulShutdown()
    if let cancelAfter = escalation.cancelAfter {
      try await Task.sleep(for: cancelAfter)
      if cancelAfter > .zero { logger.warning("\(what) still running after the shutdown grace; cancelling") }
      task.cancel()
    }
    try await Task.sleep(for: escalation.abandonAfter - (escalation.cancelAfter ?? .zero))
    logger.error("\(what) did not end; leaving it behind so that the process can exit")
    race.finish(.success(false))
  }
  defer { escalating.cancel() }
  do {
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { race.wait($0) }
    } onCancel: {
      if escalation.cancelAfter != nil { task.cancel() }
      race.finish(.failure(CancellationError()))
    }
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
