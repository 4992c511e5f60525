import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The campaign service, through which a run reads and writes subscribers (never its tables).
package typealias CampaignClient = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

/// Starts runs (one at a time per job, across replicas: a session advisory lock on the job held
/// by the connection the run works on), resumes interrupted ones, runs the schedule, and owns
/// the runs' lifetime: at graceful shutdown they are asked to stop between two pages and waited
/// for, and cancelled when they take longer than `SyncSettings.stopGrace` or the wait itself is
/// cancelled (they then end as interrupted, resumable; the page in progress is read again).
/// Nothing it waits for is beyond cancellation or without a deadline.
package final class RunManager: Sendable {
  let store: SyncStore
  private let campaignClient: CampaignClient?
  let settings: SyncSettings
  let logger: Logger
  private let state = Mutex(State())

  private struct State {
    var stopping = false
    var runs: [UUID: Task<Void, Never>] = [:]
  }

  package init(store: SyncStore, campaign: CampaignClient?, settings: SyncSettings, logger: Logger) {
    self.store = store
    self.campaignClient = campaign
    self.settings = settings
    self.logger = logger
  }

  package enum StartError: Error {
    case busy(job: String, run: UUID?)
    case stopping
  }

  private var stopping: Bool { state.withLock { $0.stopping } }

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
    let campaign = try campaign()
    let jobID = try job.storedID()
    let (stream, continuation) = AsyncStream.makeStream(of: Result<SyncRunRecord, any Error>.self)
    // Tracked from the start, whatever becomes of the caller: `stop()` waits for it. Registered
    // under the same lock as `stopping` is read, so no run starts unseen by a stop.
    let token = UUID()
    try state.withLock { state in
      guard !state.stopping else { throw StartError.stopping }
      state.runs[token] = Task {
        await self.execute(job, id: jobID, dryRun: dryRun, full: full, campaign: campaign) { continuation.yield($0) }
        continuation.finish()
        self.state.withLock { _ = $0.runs.removeValue(forKey: token) }
      }
    }
    var started: Result<SyncRunRecord, any Error>?
    for await result in stream {
      started = result
      break
    }
    return try (started ?? .failure(CancellationError())).get()
  }

  /// Runs `body` holding the job's lock (no run can start meanwhile) on the lock's connection;
  /// `StartError.busy` when a run of the job holds it.
  package func withJobLock<T: Sendable>(_ job: SyncJob, _ body: (PostgresConnection) async throws -> T) async throws -> T {
    do {
      return try await store.withJobLock(try job.storedID(), body)
    } catch SyncStoreError.locked(let run) {
      throw StartError.busy(job: job.name, run: run)
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
    _ job: SyncJob, id jobID: UUID, dryRun: Bool, full requested: Bool, campaign: CampaignClient,
    started: @escaping @Sendable (Result<SyncRunRecord, any Error>) -> Void
  ) async {
    let report = StartReport(started)
    do {
      try await withJobLock(job) { connection in
        // As it is now that no change can happen meanwhile (UpdateJob takes the same lock), read
        // on the lock's connection: a run never waits for a second pooled connection while it
        // holds one (runs of many jobs at once would otherwise exhaust the pool and wait forever).
        guard let current = try await self.store.job(jobID, on: connection) else {
          throw RunAborted(description: "sync job \(jobID.lowercasedString) was deleted")
        }
        try await self.run(current, id: jobID, dryRun: dryRun, full: requested, campaign: campaign, connection: connection, report: report)
      }
    } catch {
      if !report.reported {
        report(.failure(error))
      } else {
        logger.error("sync run could not be recorded as ended", metadata: ["job": "\(job.name)", "error": "\(error.logDescription)"])
      }
    }
  }

  private func run(
    _ job: SyncJob, id jobID: UUID, dryRun: Bool, full requested: Bool, campaign: CampaignClient, connection: PostgresConnection,
    report: StartReport
  ) async throws {
    // Holding the lock, a run still marked running lost its process: it is resumed.
    let previous = try await store.latestRun(of: jobID, on: connection)
    let resume = previous.flatMap { [.running, .failed, .interrupted].contains($0.status) && !$0.dryRun && !dryRun ? $0 : nil }
    let reconcileDue = job.lastFullSyncAt.map { Date().timeIntervalSince($0) >= Double(job.reconcileSeconds) } ?? true
    let full = requested || (resume?.full ?? false) || job.cursor.isEmpty || job.modifiedField.isEmpty || reconcileDue
    let sweep = resume.flatMap { $0.full ? $0.sweepID : nil } ?? UUID()
    // A full run that would resume an incremental one starts over: with the other's checkpoint it
    // would read only part of the table, and take the rest for deleted.
    let checkpoint = dryRun || resume?.full != full ? "" : resume?.checkpoint ?? ""
    if let previous, previous.status == .running, try await store.markInterrupted(previous.id, on: connection) {
      Self.countRun(.interrupted)
    }
    let record = try await store.insertRun(
      NewRun(
        jobID: jobID, dryRun: dryRun, full: full, sweepID: sweep, resumedFrom: resume?.id,
        cursorBefore: resume?.cursorBefore ?? job.cursor, checkpoint: checkpoint),
      on: connection)
    report(.success(record))

    var status = SyncRunRecord.Status.succeeded
    var message = ""
    var cursor = ""
    var execution: SyncExecution?
    do {
      let connector = try self.connector(for: job)
      let work = SyncExecution(
        job: job, jobID: jobID, run: record, store: store, connection: connection, campaign: campaign, connector: connector,
        shouldStop: { self.stopping }, logger: logger)
      execution = work
      cursor = try await work.perform()
    } catch let error as RunAborted {
      (status, message) = (.aborted, error.description)
    } catch is RunStopped {
      (status, message) = (.interrupted, Self.stoppedMessage)
    } catch  where Task.isCancelled {
      // The service stopped it mid-page (it took longer than `stopGrace`, or the process is
      // being cancelled): the page is read again by the run that resumes it.
      (status, message) = (.interrupted, Self.stoppedMessage)
    } catch {
      (status, message) = (.failed, error.postgresError != nil ? error.databaseMessage : RPCError.describe(error))
    }
    if let execution {
      // What the last page found is kept, even when the run ends badly.
      try? await execution.saveProgress(phase: "done")
      if !execution.errors.isEmpty {
        try? await store.saveErrors(execution.errors, run: record.id, on: connection)
      }
    }
    if status != .succeeded {
      logger.warning("sync run ended early", metadata: ["job": "\(job.name)", "status": "\(status)", "error": "\(message)"])
    }
    try await store.finishRun(
      record.id, status: status, cursorAfter: status == .succeeded ? cursor : (execution?.run.checkpoint ?? ""), error: message,
      on: connection)
    Self.countRun(status)
    if status == .succeeded && !dryRun {
      try await store.advanceCursor(of: jobID, to: cursor, fullSyncAt: record.full ? record.startedAt : nil, on: connection)
    }
  }

  static let stoppedMessage = "the sync service stopped during the run; the next run resumes from its checkpoint"

  /// A run ended (`herald_sync_runs_total{status}`): by its own process, or found interrupted by
  /// the next run of its job when its process was gone.
  static func countRun(_ status: SyncRunRecord.Status) {
    Counter(label: "herald_sync_runs_total", dimensions: [("status", status.rawValue)]).increment()
  }

  /// Starts the runs that are due by their job's schedule, until graceful shutdown (the runs'
  /// end is `superviseRuns`'s).
  package func runScheduler() async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      await BackgroundWorker.pause(settings.schedulerInterval)
      guard !Task.isShuttingDownGracefully && !Task.isCancelled else { break }
      do {
        let lastStarted = try await store.lastScheduledStarts()
        for job in try await store.jobs() where job.scheduleSeconds > 0 {
          let last = job.id.flatMap { lastStarted[$0] }
          guard last.map({ Date().timeIntervalSince($0) >= Double(job.scheduleSeconds) }) ?? true else { continue }
          do {
            _ = try await start(job, dryRun: false, full: false)
          } catch StartError.busy {
            // Another replica (or an earlier schedule) is running it.
          } catch StartError.stopping {
            return
          }
        }
      } catch {
        logger.error("sync scheduler round failed; will retry", metadata: ["error": "\(error.logDescription)"])
      }
    }
  }

  /// Waits for graceful shutdown (or cancellation), then stops the runs: the process's runs end
  /// before its gRPC server, campaign client and database pool do.
  package func superviseRuns() async {
    try? await gracefulShutdown()
    await stop()
  }

  /// Asks every run to stop after its current page and waits for them, at most `stopGrace`; then
  /// cancels those still going (they end as interrupted; a cancelled wait cancels them at once)
  /// and gives them a few seconds more. No run starts after this. It never waits without a
  /// deadline: a run that ignores its cancellation (a statement waiting on a lock) ends when the
  /// database pool, which stops after the workers, closes its connection.
  package func stop() async {
    let grace = settings.stopGrace
    let runs = state.withLock { state in
      state.stopping = true
      return state.runs
    }
    guard !runs.isEmpty else { return }
    if await Self.waitFor(runs, upTo: grace) { return }
    logger.warning("sync runs did not reach the end of a page in time; cancelling them", metadata: ["runs": "\(runs.count)"])
    for run in runs.values { run.cancel() }
    let ended = await Self.waitFor(runs, upTo: .seconds(5))
    if !ended {
      logger.error("cancelled sync runs have not ended; not waiting for them", metadata: ["runs": "\(runs.count)"])
    }
  }

  /// Whether these runs ended within `limit` (false as soon as the waiting task is cancelled).
  private static func waitFor(_ runs: [UUID: Task<Void, Never>], upTo limit: Duration) async -> Bool {
    let ended: Void? = try? await answerWithin(limit) { for run in runs.values { await run.value } }
    return ended != nil
  }
}
