import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The campaign process (SPEC §2): subscribers and consent, lists and segments, templates,
/// campaigns, and the background relay (outbox → delivery) and scheduler.
package enum CampaignDefinition {
  package static let definition = ServiceDefinition(
    name: "campaign",
    grpcServices: [Herald_Campaign_V1_CampaignService.descriptor.fullyQualifiedService],
    migrations: HeraldMigrations.campaign,
    readinessDependencies: ["delivery"],
    makeServices: { resources in
      [
        CampaignService(
          store: PostgresSubscriberStore(client: resources.database, logger: resources.logger),
          campaigns: CampaignStore(client: resources.database, logger: resources.logger))
      ]
    },
    makeWorkers: { resources in
      guard let delivery = resources.clients["delivery"] else {
        throw RPCError(code: .failedPrecondition, message: "campaign needs the delivery service's address to relay its outbox")
      }
      let relay = OutboxRelay(client: resources.database, sink: DeliverySink(client: delivery), logger: resources.logger)
      let scheduler = CampaignScheduler(client: resources.database, logger: resources.logger)
      return [
        BackgroundWorker(name: "outbox-relay") { await relay.run() },
        BackgroundWorker(name: "scheduler") { await scheduler.run() },
      ]
    })
}
