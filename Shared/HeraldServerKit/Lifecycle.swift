import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import Logging
import ServiceLifecycle

/// Runs a gRPC server as a swift-service-lifecycle service: serves until graceful shutdown,
/// then reports NOT_SERVING, ends health watches and lets in-flight RPCs finish.
package struct GRPCServerService<Transport: ServerTransport>: Service {
  let server: GRPCServer<Transport>
  let health: HealthStatus
  let logger: Logger

  package init(server: GRPCServer<Transport>, health: HealthStatus, logger: Logger) {
    self.server = server
    self.health = health
    self.logger = logger
  }

  /// Serves until graceful shutdown, which lets the RPCs in flight finish. One still running
  /// 10 s later (stuck in a query on a connection whose server stopped answering, which ignores
  /// cancellation) is left behind with the server, never cancelled (cancelling the serving task
  /// with connections open traps in NIO), so that the process can exit.
  package func run() async throws {
    let (server, health) = (self.server, self.health)
    _ = try await untilShutdown("the gRPC server", .server, logger: logger) {
      try await withGracefulShutdownHandler {
        try await server.serve()
      } onGracefulShutdown: {
        health.shutDown()
        server.beginGracefulShutdown()
      }
    }
  }
}

/// Runs a gRPC client's connections until graceful shutdown.
package struct GRPCClientService<Transport: ClientTransport>: Service {
  package let client: GRPCClient<Transport>

  package init(client: GRPCClient<Transport>) {
    self.client = client
  }

  package func run() async throws {
    try await withGracefulShutdownHandler {
      try await client.runConnections()
    } onGracefulShutdown: {
      client.beginGracefulShutdown()
    }
  }
}

/// Makes gRPC clients for other Herald services. Every call gets `timeout` as its deadline unless
/// the call sets its own, and carries the current request id. Calls are spread round-robin over
/// every address the name resolves to (on Kubernetes the back-ends' Services are headless, so a
/// name resolves to each replica's pod).
package enum ServiceClientFactory {
  package static func make(address: ServiceAddress, timeout: Duration) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    let defaults = MethodConfig(names: [MethodConfig.Name(service: "")], timeout: timeout)
    let transport = try HTTP2ClientTransport.Posix(
      target: .dns(host: address.host, port: address.port),
      transportSecurity: .plaintext,
      serviceConfig: ServiceConfig(methodConfig: [defaults], loadBalancingConfig: [.roundRobin])
    )
    return GRPCClient(transport: transport, interceptors: [RequestIDClientInterceptor()])
  }
}
