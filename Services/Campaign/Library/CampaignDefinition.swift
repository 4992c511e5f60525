import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The campaign process (SPEC §2): subscribers and consent; campaigns, templates and sends follow.
package enum CampaignDefinition {
  package static let definition = ServiceDefinition(
    name: "campaign",
    grpcServices: [Herald_Campaign_V1_CampaignService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.campaign,
    readinessDependencies: ["delivery"]
  ) { resources in
    [CampaignService(store: PostgresSubscriberStore(client: resources.database, logger: resources.logger))]
  }
}
