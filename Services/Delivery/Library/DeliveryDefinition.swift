import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The delivery process (SPEC §3): the durable send queue; workers and providers follow.
package enum DeliveryDefinition {
  package static let definition = ServiceDefinition(
    name: "delivery",
    grpcServices: [Herald_Delivery_V1_DeliveryService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.delivery,
    readinessDependencies: ["ratelimit"]
  ) { resources in
    [DeliveryService(queue: PostgresMessageQueue(client: resources.database, logger: resources.logger))]
  }
}
