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
/// query has a deadline, and workers get `workerGrace` to finish what they are doing before the
/// calls they still wait on are cancelled.
struct ReadinessService: Service {
  static let workerGrace: Duration = .seconds(10)

  let definition: ServiceDefinition
  let configuration: ServiceConfiguration
  let database: PostgresClient
  let clients: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  let health: HealthStatus
  let resources: ServiceResources
  let workers: [BackgroundWorker]
  let logger: Logger

  func run() async throws {
    let started = try await unlessShutDown(abandonAfter: Self.abandonAfter) {
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
    await runWorkers()
  }

  /// The workers and the database watch until they end; once graceful shutdown has begun, those
  /// still running after `workerGrace` are cancelled, and those that still do not end
  /// `abandonAfter` later (a query on a connection whose server stopped answering ignores
  /// cancellation) are left behind, so that the process can exit.
  private func runWorkers() async {
    let abandonAfter = Self.abandonAfter
    let logger = self.logger
    _ = try? await firstToFinish(
      { await self.runWorkerGroup() },
      {
        try await gracefulShutdown()
        try await Task.sleep(for: Self.workerGrace + abandonAfter)
        logger.error("background workers did not end when cancelled; leaving them behind so that the process can exit")
      })
  }

  static let abandonAfter: Duration = .seconds(5)

  private func runWorkerGroup() async {
    await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        await watchDatabase()
        return true
      }
      for worker in workers {
        group.addTask {
          logger.debug("worker started", metadata: ["worker": "\(worker.name)"])
          await worker.run()
          return true
        }
      }
      group.addTask {
        // The escalation: false when the grace after the start of shutdown is over.
        do {
          try await gracefulShutdown()
          try await Task.sleep(for: Self.workerGrace)
          return false
        } catch {
          return true
        }
      }
      var running = workers.count + 1
      while let finished = await group.next() {
        if !finished {
          logger.warning("background workers still busy after the shutdown grace; cancelling them")
          group.cancelAll()
        } else {
          running -= 1
          if running == 0 { group.cancelAll() }
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
      // answerWithin, not withTimeout: a query on a connection whose server stopped answering
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
