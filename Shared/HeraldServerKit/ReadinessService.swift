import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldPostgres
import HeraldProtos
import Logging
import PostgresNIO
import ServiceLifecycle

/// Start-up work that must finish before the process reports SERVING, then the background
/// workers and a database watch.
///
/// Shutdown never waits on a database that does not answer: start-up (migrations, `prepare`,
/// waiting for dependencies) is cancelled at once when graceful shutdown begins, the watch's
/// query has a deadline, and workers get 10 s to finish what they are doing before the calls
/// they still wait on are cancelled (`ShutdownEscalation`).
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
    let started = try await untilShutdown("start-up", .startUp, logger: logger) {
      try await migrate()
      try await definition.prepare(resources)
      for dependency in definition.readinessDependencies {
        guard let client = clients[dependency] else { continue }
        try await waitUntilServing(dependency, client: client)
      }
    }
    guard started, !Task.isShuttingDownGracefully else { return }  // stopped while starting
    health.setAll(.serving)
    logger.info("serving", metadata: ["port": "\(configuration.port)"])
    _ = try await untilShutdown("background workers", .workers, logger: logger) {
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
      // answerWithin, not a task group: a query on a connection whose server stopped answering
      // may ignore cancellation, and the watch must neither hang nor hold up shutdown.
      let answered =
        (try? await cancelWhenGracefulShutdown { [database, logger] in
          try await answerWithin(.seconds(5)) { _ = try await database.query("SELECT 1", logger: logger) }
        }) != nil
      if answered != serving {
        serving = answered
        health.setAll(answered ? .serving : .notServing)
        logger.log(level: answered ? .info : .error, answered ? "database answers again" : "database does not answer")
      }
    }
  }
}
