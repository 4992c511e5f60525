import Foundation
import GRPCCore
import HeraldProtos
import Synchronization

package typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

/// The serving status of a process and its gRPC services, as `grpc.health.v1.Health` reports it.
///
/// Starts NOT_SERVING; the host sets SERVING once migrations are applied and dependencies answer.
/// The empty service name ("") stands for the whole process, as the health protocol defines.
/// `liveness` is SERVING from start until shutdown whatever the readiness: Kubernetes' liveness
/// probe asks for it, so a process waiting for its database is not restarted for that.
package final class HealthStatus: Sendable {
  package static let liveness = "liveness"

  private struct Watcher {
    var service: String
    var continuation: AsyncStream<ServingStatus>.Continuation
  }

  private struct State {
    var statuses: [String: ServingStatus]
    var watchers: [UUID: Watcher] = [:]
    var closed = false
  }

  private let state: Mutex<State>

  package init(services: [String]) {
    var statuses: [String: ServingStatus] = ["": .notServing, Self.liveness: .serving]
    for service in services { statuses[service] = .notServing }
    self.state = Mutex(State(statuses: statuses))
  }

  /// nil when the service is not known to this process.
  package func status(of service: String) -> ServingStatus? {
    state.withLock { $0.statuses[service] }
  }

  /// Sets every registered service (and the process as a whole, but not `liveness`) to `status`.
  package func setAll(_ status: ServingStatus) {
    state.withLock { state in
      for service in state.statuses.keys where service != Self.liveness { state.statuses[service] = status }
      for watcher in state.watchers.values where watcher.service != Self.liveness { watcher.continuation.yield(status) }
    }
  }

  /// Changes to one service's status, starting with the current one (SERVICE_UNKNOWN if unknown).
  package func updates(of service: String) -> AsyncStream<ServingStatus> {
    let (stream, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
    let id = UUID()
    let finishedAlready = state.withLock { state -> Bool in
      continuation.yield(state.statuses[service] ?? .serviceUnknown)
      if state.closed { return true }
      state.watchers[id] = Watcher(service: service, continuation: continuation)
      return false
    }
    if finishedAlready { continuation.finish() }
    continuation.onTermination = { [weak self] _ in
      _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
    }
    return stream
  }

  /// Reports NOT_SERVING and ends every Watch stream, so a graceful shutdown is not held up by them.
  package func shutDown() {
    let continuations = state.withLock { state -> [AsyncStream<ServingStatus>.Continuation] in
      for service in state.statuses.keys { state.statuses[service] = .notServing }
      state.closed = true
      defer { state.watchers.removeAll() }
      return state.watchers.values.map(\.continuation)
    }
    for continuation in continuations {
      continuation.yield(.notServing)
      continuation.finish()
    }
  }
}

extension ServingStatus {
  /// The status as the health protocol names it (SERVING, NOT_SERVING, ...).
  package var name: String {
    switch self {
    case .serving: "SERVING"
    case .notServing: "NOT_SERVING"
    case .serviceUnknown: "SERVICE_UNKNOWN"
    case .unknown: "UNKNOWN"
    case .UNRECOGNIZED(let value): "status \(value)"
    }
  }
}

/// `grpc.health.v1.Health`, served by every Herald process.
package struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  let status: HealthStatus

  package init(status: HealthStatus) {
    self.status = status
  }

  package func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard let current = status.status(of: request.service) else {
      throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
    }
    var response = Grpc_Health_V1_HealthCheckResponse()
    response.status = current
    return response
  }

  package func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    var last: ServingStatus?
    for await current in status.updates(of: request.service) where current != last {
      var message = Grpc_Health_V1_HealthCheckResponse()
      message.status = current
      try await response.write(message)
      last = current
    }
  }
}
