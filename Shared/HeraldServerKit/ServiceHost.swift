import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import Logging
import PostgresNIO
import Prometheus
import ServiceLifecycle
import SwiftProtobuf
import UnixSignals

/// Composes a back-end process: PostgreSQL client (first, so it stops last), gRPC clients for its
/// dependencies, the metrics listener, the gRPC server with Health and the request interceptors,
/// and a readiness task that applies migrations, waits for dependencies, reports SERVING and then
/// watches the database.
package struct ServiceHost: Sendable {
  package let definition: ServiceDefinition
  package let configuration: ServiceConfiguration
  package let health: HealthStatus
  package let database: PostgresClient
  private let transport: HTTP2ServerTransport.Posix
  private let services: [any Service]
  private let logger: Logger

  /// `metrics` is the process's registry (from `Observability.bootstrap`); `/metrics` is served
  /// when it is given and the configuration names a metrics address.
  package init(
    definition: ServiceDefinition, configuration: ServiceConfiguration, metrics: PrometheusCollectorRegistry? = nil,
    logger: Logger? = nil
  ) throws {
    let logger = logger ?? Logger(label: "herald.\(definition.name)")
    self.definition = definition
    self.configuration = configuration
    self.logger = logger
    self.health = HealthStatus(services: definition.grpcServices)
    let applicationName = DatabaseConfiguration.applicationName(service: definition.name)
    self.database = configuration.database.makeClient(logger: logger, applicationName: applicationName)

    var clients: [String: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
    for (name, address) in configuration.dependencies {
      clients[name] = try ServiceClientFactory.make(address: address, timeout: configuration.rpcTimeout)
    }
    let resources = ServiceResources(database: database, clients: clients, configuration: configuration, logger: logger)
    let rpcServices = try definition.makeServices(resources) + [HealthService(status: health)]
    // Connections are closed gracefully after five minutes, so callers resolve the service's name
    // again and spread their calls over replicas added since (HPA scale-out).
    self.transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: configuration.host, port: configuration.port), transportSecurity: .plaintext,
      config: .defaults {
        $0.connection.maxAge = .seconds(300)
        $0.connection.maxGraceTime = .seconds(60)
      })
    let server = GRPCServer(
      transport: transport, services: rpcServices,
      interceptors: [
        RequestLoggingInterceptor(logger: logger),
        ServiceGuardInterceptor(health: health, service: definition.name, logger: logger),
        RequestCheckInterceptor(),
      ])

    var endpoint: [any Service] = []
    if let registry = metrics, let address = configuration.metrics {
      let database = self.database
      endpoint.append(
        MetricsEndpoint(
          host: address.host, port: address.port, registry: registry,
          collectors: [
            DatabasePoolMetrics.named(
              database: database, applicationName: applicationName,
              maximum: configuration.database.client.options.maximumConnections, logger: logger),
            // The service's own figures once its schema is there (SERVING), not during start-up.
            (
              definition.name,
              { @Sendable [health] scrape in
                guard health.status(of: "") == .serving else { return }
                try await definition.collectMetrics(resources, scrape)
              }
            ),
          ], logger: logger))
    }

    let readiness = ReadinessService(
      definition: definition, configuration: configuration, database: database, clients: clients, health: health,
      resources: resources, workers: try definition.makeWorkers(resources), logger: logger)
    self.services =
      [database] + clients.keys.sorted().compactMap { clients[$0].map(GRPCClientService.init) } + endpoint
      + [GRPCServerService(server: server, health: health, logger: logger), readiness]
  }

  /// The port the server is bound to (useful with port 0).
  package func listeningPort() async throws -> Int {
    guard let port = try await transport.listeningAddress.ipv4?.port else {
      throw RPCError(code: .internalError, message: "the server is not bound to an IPv4 address")
    }
    return port
  }

  /// The process's services, started in order and stopped in reverse. A service that ends or
  /// fails shuts the others down gracefully, never by cancelling them: a gRPC or HTTP server whose
  /// serving task is cancelled while accepted connections wait to be served traps ("Deinited
  /// NIOAsyncWriter without calling finish()", apple/swift-nio#3481), e.g. after the process was
  /// paused (SIGSTOP) and connections piled up. The failure is still what `run()` throws.
  package func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
    ServiceGroup(
      configuration: .init(
        services: services.map {
          .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        },
        gracefulShutdownSignals: signals, logger: logger))
  }
}
