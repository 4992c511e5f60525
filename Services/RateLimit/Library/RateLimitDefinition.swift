import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The rate-limit process (SPEC §4): limit definitions; decisions and replicas follow.
package enum RateLimitDefinition {
  package static let definition = ServiceDefinition(
    name: "ratelimit",
    grpcServices: [Herald_Ratelimit_V1_RateLimitService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.ratelimit
  ) { resources in
    [RateLimitService(store: PostgresLimitStore(client: resources.database, logger: resources.logger))]
  }
}
