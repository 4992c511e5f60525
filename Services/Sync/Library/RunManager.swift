import AsyncHTTPClient
import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Starts runs (one at a time per job, across replicas: a session advisory lock on the job held
/// by the connection the run works on), resumes interrupted ones, and runs the schedule.
package final class RunManager: Sendable {
  let client: PostgresClient
  let jobs: any JobStore
  private let campaignClient: CampaignClient?
  let settings: SyncSettings
  let logger: Logger
  private let running = Mutex([UUID: Task<Void, Never>]())
  private let stopping = Atomic<Bool>(false)

  package init(client: PostgresClient, jobs: any JobStore, campaign: CampaignClient?, settings: SyncSettings, logger: Logger) {
    self.client = client
    self.jobs = jobs
    self.campaignClient = campaign
    self.settings = settings
    self.logger = logger
  }

  package enum StartError: Error {
    case busy(job: String, run: UUID?)
    case stopping
  }

  /// The campaign service, through which subscribers are read and written (never its tables).
  func campaign() throws -> CampaignClient {
    guard let campaignClient else {
      throw RPCError(code: .failedPrecondition, message: "the sync service has no campaign address (HERALD_CAMPAIGN_ADDR)")
    }
    return campaignClient
  }

  func connector(for job: SyncJob) throws -> AirtableClient {
    guard let token = settings.environment[job.tokenEnv], !token.isEmpty else {
      throw RunAborted(description: "the environment variable \(job.tokenEnv) (the API token of job '\(job.name)') is not set")
    }
    var configuration = AirtableClient.Configuration(endpoint: settings.apiURL, base: job.baseID, table: job.tableID, token: token)
    configuration.rateLimitWait = settings.rateLimitWait
    configuration.requestsPerSecond = settings.requestsPerSecond
    return AirtableClient(configuration: configuration)
  }

  /// Starts a run in the background once it holds the job's lock and is recorded; returns it.
  package func start(_ job: SyncJob, dryRun: Bool, full: Bool) async throws -> SyncRunRecord {
    guard !stopping.load(ordering: .relaxed) else { throw StartError.stopping }
    let campaign = try campaign()
    let (stream, continuation) = AsyncStream.makeStream(of: Result<SyncRunRecord, any Error>.self)
    // Tracked from the start (stop() waits for it), whatever becomes of the caller.
    let token = UUID()
    let task = Task {
      await self.execute(job, dryRun: dryRun, full: full, campaign: campaign) { continuation.yield($0) }
      continuation.finish()
    }
    running.withLock { $0[token] = task }
    Task {
      await task.value
      _ = self.running.withLock { $0.removeValue(forKey: token) }
    }
    var started: Result<SyncRunRecord, any Error>?
    for await result in stream {
      started = result
      break
    }
    return try (started ?? .failure(CancellationError())).get()
  }

  /// Runs `body` holding the job's lock (no run can start meanwhile); `StartError.busy` when a
  /// run of the job holds it.
  package func withJobLock<T: Sendable>(_ job: SyncJob, _ body: (PostgresConnection) async throws -> T) async throws -> T {
    let jobID = job.id!
    let logger = self.logger
    return try await client.withConnection { connection in
      let locked = try await (try await connection.query(AdvisoryKey(jobID).trySessionLock, logger: logger)).decode(Bool.self).elements().first ?? false
      guard locked else {
        let current = try await (try await connection.query(
          "SELECT id FROM sync.runs WHERE job_id = \(jobID) AND status = 'running'", logger: logger
        )).decode(UUID.self).elements().first
        throw StartError.busy(job: job.name, run: current)
      }
      let result: Result<T, any Error>
      do {
        result = .success(try await body(connection))
      } catch {
        result = .failure(error)
      }
      do {
        try await connection.query(AdvisoryKey(jobID).unlock, logger: logger)
      } catch {
        logger.error("sync job lock not released; closing the connection", metadata: ["error": "\(error.databaseMessage)"])
        try? await connection.close()
      }
      return try result.get()
    }
  }



  /// Hands the started run (or why it could not start) to the caller of `start`, once.
  private final class StartReport: Sendable {
    private let deliver: @Sendable (Result<SyncRunRecord, any Error>) -> Void
    private let done = Atomic<Bool>(false)

    init(_ deliver: @escaping @Sendable (Result<SyncRunRecord, any Error>) -> Void) { self.deliver = deliver }

    func callAsFunction(_ result: Result<SyncRunRecord, any Error>) {
      if !done.exchange(true, ordering: .relaxed) { deliver(result) }
    }

    var reported: Bool { done.load(ordering: .relaxed) }
  }

  private func execute(
    _ job: SyncJob, dryRun: Bool, full requested: Bool, campaign: CampaignClient,
    started: @escaping @Sendable (Result<SyncRunRecord, any Error>) -> Void
  ) async {
    let jobID = job.id!
    let logger = self.logger
    let report = StartReport(started)
    do {
      try await withJobLock(job) { connection in
        // As it is now that no change can happen meanwhile (UpdateJob takes the same lock).
        guard let current = try await self.jobs.get(id: jobID) else {
          throw RunAborted(description: "sync job \(jobID.lowercasedString) was deleted")
        }
        try await self.run(current, dryRun: dryRun, full: requested, campaign: campaign, connection: connection, report: report)
      }
    } catch {
      if !report.reported {
        report(.failure(error))
      } else {
        logger.error("sync run could not be recorded as ended", metadata: ["job": "\(job.name)", "error": "\(error.databaseMessage)"])
      }
    }
  }

  private func run(
    _ job: SyncJob, dryRun: Bool, full requested: Bool, campaign: CampaignClient, connection: PostgresConnection,
    report: StartReport
  ) async throws {
    let jobID = job.id!
    // Holding the lock, a run still marked running lost its process: it is resumed.
    let previous = try await RunStore.latest(job: jobID, connection: connection, logger: logger)
    let resume = previous.flatMap { [.running, .failed, .interrupted].contains($0.status) && !$0.dryRun && !dryRun ? $0 : nil }
    let reconcileDue = job.lastFullSyncAt.map { Date().timeIntervalSince($0) >= Double(job.reconcileSeconds) } ?? true
    let full = requested || (resume?.full ?? false) || job.cursor.isEmpty || job.modifiedField.isEmpty || reconcileDue
    let sweep = resume?.full == true ? resume!.sweepID : UUID()
    // A full run that would resume an incremental one starts over: with the other's checkpoint it
    // would read only part of the table, and take the rest for deleted.
    let checkpoint = dryRun || resume?.full != full ? "" : resume?.checkpoint ?? ""
    if let previous, previous.status == .running {
      try await connection.query(
        """
        UPDATE sync.runs SET status = 'interrupted', finished_at = now(),
          error = 'the process running it stopped (crash or shutdown); resumed by a later run'
        WHERE id = \(previous.id) AND status = 'running'
        """, logger: logger)
    }
    let row = try await connection.query(
      """
      INSERT INTO sync.runs (job_id, dry_run, full_sync, sweep_id, resumed_from, cursor_before, checkpoint)
      VALUES (\(jobID), \(dryRun), \(full), \(sweep), \(resume?.id), \(resume?.cursorBefore ?? job.cursor),
        \(checkpoint))
      RETURNING \(unescaped: RunStore.runColumns)
      """, logger: logger
    ).collect().first
    guard let row else { throw PostgresError.protocol("INSERT INTO sync.runs RETURNING gave no row") }
    let record = try RunStore.run(row)
    report(.success(record))

    var status = SyncRunRecord.Status.succeeded
    var message = ""
    var cursor = ""
    var execution: SyncExecution?
    do {
      let connector = try self.connector(for: job)
      let work = SyncExecution(
        job: job, run: record, connection: connection, campaign: campaign, connector: connector,
        shouldStop: { self.stopping.load(ordering: .relaxed) }, logger: logger)
      execution = work
      cursor = try await work.perform()
    } catch let error as RunAborted {
      (status, message) = (.aborted, error.description)
    } catch is RunStopped {
      (status, message) = (.interrupted, "the sync service stopped during the run; the next run resumes from its checkpoint")
    } catch {
      (status, message) = (.failed, error.postgresError != nil ? error.databaseMessage : RPCError.describe(error))
    }
    if let execution {
      // What the last page found is kept, even when the run ends badly.
      try? await execution.saveProgress(phase: "done")
      if !execution.errors.isEmpty {
        try? await RunStore.save(errors: execution.errors, run: record.id, connection: connection, logger: logger)
      }
    }
    if status != .succeeded {
      logger.warning("sync run ended early", metadata: ["job": "\(job.name)", "status": "\(status)", "error": "\(message)"])
    }
    try await RunStore.finish(
      record.id, status: status, cursorAfter: status == .succeeded ? cursor : (execution?.run.checkpoint ?? ""), error: message,
      connection: connection, logger: logger)
    if status == .succeeded && !dryRun {
      try await connection.query(
        """
        UPDATE sync.jobs SET cursor = \(cursor),
          last_full_sync_at = CASE WHEN \(record.full) THEN \(record.startedAt) ELSE last_full_sync_at END
        WHERE id = \(jobID)
        """, logger: logger)
    }
  }

  /// Starts the runs that are due by their job's schedule, until graceful shutdown; then lets
  /// running runs stop between pages (interrupted, resumable) and waits for them.
  package func runScheduler() async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      await BackgroundWorker.pause(settings.schedulerInterval)
      guard !Task.isShuttingDownGracefully else { break }
      do {
        // The last start of every scheduled job, in one query.
        var lastStarted: [UUID: Date] = [:]
        for try await (id, at) in try await client.query(
          """
          SELECT job_id, max(started_at) FROM sync.runs
          WHERE NOT dry_run AND job_id IN (SELECT id FROM sync.jobs WHERE schedule_seconds > 0) GROUP BY job_id
          """, logger: logger
        ).decode((UUID, Date).self) {
          lastStarted[id] = at
        }
        for job in try await jobs.all() where job.scheduleSeconds > 0 {
          let last = lastStarted[job.id!]
          guard last.map({ Date().timeIntervalSince($0) >= Double(job.scheduleSeconds) }) ?? true else { continue }
          do {
            _ = try await start(job, dryRun: false, full: false)
          } catch StartError.busy {
            // Another replica (or an earlier schedule) is running it.
          }
        }
      } catch {
        logger.error("sync scheduler round failed; will retry", metadata: ["error": "\(RPCError.describe(error))"])
      }
    }
    await stop()
  }

  /// Asks every run to stop after its current page and waits for them.
  package func stop() async {
    stopping.store(true, ordering: .relaxed)
    for task in running.withLock({ Array($0.values) }) { await task.value }
  }
}
