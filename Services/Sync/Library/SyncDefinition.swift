import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The sync process (SPEC §5): jobs, runs against Airtable-style tables, conflicts, history.
package enum SyncDefinition: BackEndProcess {
  package static let name = "sync"
  package static let migrations = HeraldMigrations.sync

  package static func loadSettings(_ environment: Settings) throws -> SyncSettings {
    try SyncSettings.load(environment)
  }

  package static func definition(settings: SyncSettings) -> ServiceDefinition {
    make(settings: settings)
  }

  /// With the default settings (tests); each call is a fresh process's worth of state.
  package static var definition: ServiceDefinition { make() }

  package static func make(settings: SyncSettings = SyncSettings()) -> ServiceDefinition {
    let manager = PerProcess { resources in
      RunManager(
        client: resources.database, jobs: PostgresJobStore(client: resources.database, logger: resources.logger),
        campaign: resources.clients["campaign"].map(CampaignClient.init(wrapping:)), settings: settings, logger: resources.logger)
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Sync_V1_SyncService.descriptor.fullyQualifiedService],
      migrations: migrations,
      readinessDependencies: ["campaign"],
      makeServices: { resources in
        [
          SyncService(
            store: PostgresJobStore(client: resources.database, logger: resources.logger), runs: manager(resources),
            client: resources.database, logger: resources.logger)
        ]
      },
      makeWorkers: { resources in
        let runs = manager(resources)
        return [BackgroundWorker(name: "sync-scheduler") { await runs.runScheduler() }]
      })
  }
}
