import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import Logging
import PostgresNIO
import ServiceLifecycle
import SwiftProtobuf
import UnixSignals

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

  package init(
    name: String, grpcServices: [String], migrations: MigrationSet, readinessDependencies: [String] = [],
    makeServices: @escaping @Sendable (ServiceResources) throws -> [any RegistrableRPCService],
    makeWorkers: @escaping @Sendable (ServiceResources) throws -> [BackgroundWorker] = { _ in [] },
    prepare: @escaping @Sendable (ServiceResources) async throws -> Void = { _ in }
  ) {
    self.name = name
    self.grpcServices = grpcServices
    self.migrations = migrations
    self.readinessDependencies = readinessDependencies
    self.makeServices = makeServices
    self.makeWorkers = makeWorkers
    self.prepare = prepare
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

/// Composes a back-end process: PostgreSQL client (first, so it stops last), gRPC clients for its
/// dependencies, the gRPC server with Health and the request interceptor, and a readiness task that
/// applies migrations, waits for dependencies, reports SERVING and then watches the database.
package struct ServiceHost: Sendable {
  package let definition: ServiceDefinition
  package let configuration: ServiceConfiguration
  package let health: HealthStatus
  package let database: PostgresClient
  private let transport: HTTP2ServerTransport.Posix
  private let services: [any Service]
  private let logger: Logger

  package init(definition: ServiceDefinition, configuration: ServiceConfiguration, logger: Logger? = nil) throws {
    let logger = logger ?? Logger(label: "herald.\(definition.name)")
    self.definition = definition
    self.configuration = configuration
    self.logger = logger
    self.health = HealthStatus(services: definition.grpcServices)
    self.database = configuration.database.makeClient(logger: logger)

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
      ])

    let readiness = ReadinessService(
      definition: definition, configuration: configuration, database: database, clients: clients, health: health,
      resources: resources, workers: try definition.makeWorkers(resources), logger: logger)
    self.services =
      [database] + clients.keys.sorted().compactMap { clients[$0].map(GRPCClientService.init) }
      + [GRPCServerService(server: server, health: health), readiness]
  }

  /// The port the server is bound to (useful with port 0).
  package func listeningPort() async throws -> Int {
    guard let port = try await transport.listeningAddress.ipv4?.port else {
      throw RPCError(code: .internalError, message: "the server is not bound to an IPv4 address")
    }
    return port
  }

  package func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
    ServiceGroup(
      configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: signals, logger: logger))
  }
}

/// Start-up work that must finish before the process reports SERVING, then a database watch.
struct ReadinessService: Service {
  let definition: ServiceDefinition
  let configuration: ServiceConfiguration
  let database: PostgresClient
  let clients: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  let health: HealthStatus
  let resources: ServiceResources
  let workers: [BackgroundWorker]
  let logger: Logger

  func run() async throws {
    try await migrate()
    try await definition.prepare(resources)
    for dependency in definition.readinessDependencies {
      guard let client = clients[dependency] else { continue }
      try await waitUntilServing(dependency, client: client)
    }
    guard !Task.isShuttingDownGracefully else { return }
    health.setAll(.serving)
    logger.info("serving", metadata: ["port": "\(configuration.port)"])
    await withDiscardingTaskGroup { group in
      group.addTask { await watchDatabase() }
      for worker in workers {
        group.addTask {
          logger.debug("worker started", metadata: ["worker": "\(worker.name)"])
          await worker.run()
        }
      }
    }
  }

  private func migrate() async throws {
    try await MigrationRunner(lockTimeout: configuration.migrationLockTimeout, logger: logger)
      .migrateWhenReachable(definition.migrations, client: database, wait: configuration.databaseWait)
  }

  private func waitUntilServing(_ dependency: String, client: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
    let health = Grpc_Health_V1_Health.Client(wrapping: client)
    var warned = false
    while !Task.isShuttingDownGracefully {
      let status = try? await health.check(Grpc_Health_V1_HealthCheckRequest(), options: .timeout(.seconds(2))).status
      if status == .serving { return }
      if !warned {
        logger.info("waiting for dependency", metadata: ["dependency": "\(dependency)"])
        warned = true
      }
      try await Task.sleep(for: .milliseconds(500))
    }
  }

  /// Reports NOT_SERVING while the database does not answer, SERVING again when it does.
  private func watchDatabase() async {
    var serving = true
    while !Task.isShuttingDownGracefully {
      await BackgroundWorker.pause(.seconds(5))
      guard !Task.isShuttingDownGracefully else { return }
      let answered = (try? await database.query("SELECT 1", logger: logger)) != nil
      if answered != serving {
        serving = answered
        health.setAll(answered ? .serving : .notServing)
        logger.log(level: answered ? .info : .error, answered ? "database answers again" : "database does not answer")
      }
    }
  }
}

extension MigrationRunner {
  /// Applies migrations, retrying while the database is unreachable (up to `wait`). A ledger that
  /// diverges from this build is not retried: it stops the process.
  @discardableResult
  package func migrateWhenReachable(_ set: MigrationSet, client: PostgresClient, wait: Duration) async throws -> [Int] {
    let deadline = ContinuousClock.now.advanced(by: wait)
    while true {
      do {
        return try await migrate(set, client: client)
      } catch let error as MigrationError {
        throw error
      } catch where ContinuousClock.now < deadline && !Task.isCancelled {
        logger.warning("database not ready; retrying", metadata: ["error": "\(error.databaseMessage)"])
        try await Task.sleep(for: .seconds(1))
      }
    }
  }
}

extension CallOptions {
  package static func timeout(_ duration: Duration) -> CallOptions {
    var options = CallOptions.defaults
    options.timeout = duration
    return options
  }
}

/// The `main` of every back-end executable: read configuration, run until SIGTERM/SIGINT.
/// A configuration or migration error is printed (naming the variable or migration) and the
/// process exits with status 1. `probe` and `migrate` (ProcessCommand) run instead when asked.
package enum ServiceMain {
  package static func run(_ definition: ServiceDefinition) async -> Never {
    await ProcessCommand.runUnlessServe(
      executable: definition.name, migrations: definition.migrations, probeChecks: "its gRPC health reports SERVING",
      probe: { await HealthProbe.grpc($0) })
    let settings = Settings()
    do {
      let configuration = try ServiceConfiguration.load(name: definition.name, settings: settings)
      _ = Observability.bootstrap(service: definition.name, level: configuration.logLevel)
      let host = try ServiceHost(definition: definition, configuration: configuration)
      try await host.makeServiceGroup().run()
      exit(0)
    } catch {
      FileHandle.standardError.write(Data("herald \(definition.name): \(error)\n".utf8))
      exit(1)
    }
  }
}
