import Hummingbird
import HummingbirdCore
import Logging
import Synchronization

/// The port a server bound to, once it listens.
final class BoundPort: Sendable {
  let port = Mutex<Int?>(nil)
}

package struct LocalServerError: Error, CustomStringConvertible {
  package var description: String
}

/// Serves `router` on `host:port` (0 = any free port) for the duration of `body`, which gets the
/// bound port. A server that cannot start (the port is taken) throws its error instead of waiting.
/// `server` is HTTP/1.1 unless given (the provider sandbox's is HTTP/2 over TLS). (The local
/// servers of the tests, `crm-sandbox` and `provider-sandbox` all start this way.)
package func withListeningServer<T: Sendable>(
  _ router: Router<BasicRequestContext>, host: String = "127.0.0.1", port: Int = 0, label: String,
  server: HTTPServerBuilder = .http1(), _ body: (_ port: Int) async throws -> T
) async throws -> T {
  let bound = BoundPort()
  var logger = Logger(label: label)
  logger.logLevel = .critical
  let app = Application(
    router: router, server: server, configuration: .init(address: .hostname(host, port: port)),
    onServerRunning: { channel in bound.port.withLock { $0 = channel.localAddress?.port } }, logger: logger)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await app.runService(gracefulShutdownSignals: []) }
    defer { group.cancelAll() }
    group.addTask {
      while bound.port.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
    }
    try await group.next()
    guard let port = bound.port.withLock({ $0 }) else {
      throw LocalServerError(description: "\(label) stopped before it listened on \(host):\(port)")
    }
    return try await body(port)
  }
}
