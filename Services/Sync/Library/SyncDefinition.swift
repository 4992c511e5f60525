import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The sync process (SPEC §5): sync job definitions; the connector and runs follow.
package enum SyncDefinition {
  package static let definition = ServiceDefinition(
    name: "sync",
    grpcServices: [Herald_Sync_V1_SyncService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.sync,
    readinessDependencies: ["campaign"]
  ) { resources in
    [SyncService(store: PostgresJobStore(client: resources.database, logger: resources.logger))]
  }
}
