import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO
import ServiceLifecycle

/// What a back-end service contributes to the common host.
package struct ServiceDefinition: Sendable {
  /// Process name, e.g. "campaign"; also the logger label suffix.
  package var name: String
  /// Fully-qualified gRPC service names it serves, reported by Health.
  package var grpcServices: [String]
  package var migrations: MigrationSet
  /// Services that must answer SERVING before this one does (SPEC §1 edges this one relies on).
  package var readinessDependencies: [String]
  package var makeServices: @Sendable (ServiceResources) throws -> [any RegistrableRPCService]
  /// Background loops (relays, schedulers) started once the process is SERVING. Each returns
  /// when graceful shutdown begins.
  package var makeWorkers: @Sendable (ServiceResources) throws -> [BackgroundWorker]
  /// Runs once the migrations are applied and before the process reports SERVING (e.g. loading
  /// configuration into the schema); an error stops the process.
  package var prepare: @Sendable (ServiceResources) async throws -> Void
  /// The service's own figures read at each scrape of `/metrics` (queue depth, open issues...),
  /// written as gauges into the registry given.
  package var collectMetrics: @Sendable (ServiceResources, MetricsScrape) async throws -> Void

  package init(
    name: String, grpcServices: [String], migrations: MigrationSet, readinessDependencies: [String] = [],
    makeServices: @escaping @Sendable (ServiceResources) throws -> [any RegistrableRPCService],
    makeWorkers: @escaping @Sendable (ServiceResources) throws -> [BackgroundWorker] = { _ in [] },
    prepare: @escaping @Sendable (ServiceResources) async throws -> Void = { _ in },
    collectMetrics: @escaping @Sendable (ServiceResources, MetricsScrape) async throws -> Void = { _, _ in }
  ) {
    self.name = name
    self.grpcServices = grpcServices
    self.migrations = migrations
    self.readinessDependencies = readinessDependencies
    self.makeServices = makeServices
    self.makeWorkers = makeWorkers
    self.prepare = prepare
    self.collectMetrics = collectMetrics
  }
}

/// A named background loop of a service.
package struct BackgroundWorker: Sendable {
  package var name: String
  package var run: @Sendable () async -> Void

  package init(name: String, run: @escaping @Sendable () async -> Void) {
    self.name = name
    self.run = run
  }

  /// Sleeps between rounds of a loop; graceful shutdown ends the sleep early.
  package static func pause(_ duration: Duration) async {
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
  }
}

/// Shared resources handed to a service's RPC implementations.
package struct ServiceResources: Sendable {
  package var database: PostgresClient
  package var clients: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  package var configuration: ServiceConfiguration
  package var logger: Logger
}
