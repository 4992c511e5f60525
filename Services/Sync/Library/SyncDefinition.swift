import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The sync process (SPEC §5): jobs, runs against Airtable-style tables, conflicts, history.
package enum SyncDefinition: BackEndProcess {
  package static let name = "sync"
  package static let migrations = HeraldMigrations.sync
  /// The background worker that starts scheduled runs (tests without a schedule leave it out).
  package static let schedulerWorker = "sync-scheduler"
  /// The background worker that stops the process's runs at shutdown.
  package static let runsWorker = "sync-runs"

  package static func loadSettings(_ environment: Settings) throws -> SyncSettings {
    try SyncSettings.load(environment)
  }

  package static func definition(settings: SyncSettings) -> ServiceDefinition {
    make(settings: settings)
  }

  /// With the default settings (tests); each call is a fresh process's worth of state.
  package static var definition: ServiceDefinition { make() }

  package static func make(settings: SyncSettings = SyncSettings()) -> ServiceDefinition {
    // The process's runs, shared by the handlers (StartRun, and the job lock of UpdateJob,
    // DeleteJob and ResolveConflict) and the workers.
    let manager = PerProcess { resources in
      RunManager(
        store: store(resources), campaign: resources.clients["campaign"].map(CampaignClient.init(wrapping:)), settings: settings,
        logger: resources.logger)
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Sync_V1_SyncService.descriptor.fullyQualifiedService],
      migrations: migrations,
      readinessDependencies: ["campaign"],
      makeServices: { resources in
        [SyncService(store: store(resources), runs: manager(resources))]
      },
      makeWorkers: { resources in
        let runs = manager(resources)
        return [
          BackgroundWorker(name: schedulerWorker) { await runs.runScheduler() },
          BackgroundWorker(name: runsWorker) { await runs.superviseRuns() },
        ]
      },
      collectMetrics: { resources, scrape in
        try await collectMetrics(store(resources), into: scrape)
      })
  }

  static func store(_ resources: ServiceResources) -> SyncStore {
    SyncStore(client: resources.database, logger: resources.logger)
  }

  /// The figures read at each scrape: runs in progress and conflicts waiting for review, across
  /// replicas (from the database). (Event counts are counters where they happen: runs ending
  /// and the records they count, in `RunManager` and `SyncExecution`.)
  static func collectMetrics(_ store: SyncStore, into scrape: MetricsScrape) async throws {
    let open = try await store.openWork()
    scrape.gauge("herald_sync_runs_running", help: "Sync runs in progress", open.runsRunning)
    scrape.gauge("herald_sync_conflicts_pending", help: "Sync conflicts waiting for a decision (ResolveConflict)", open.conflictsPending)
  }
}
