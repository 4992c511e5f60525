import GRPCCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The campaign process (SPEC §2): subscribers and consent, lists and segments, templates,
/// campaigns, and the background relay (outbox → delivery), scheduler and analytics feed.
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
      let sink = DeliverySink(client: delivery)
      let scheduler = CampaignScheduler(client: resources.database, logger: resources.logger)
      let feed = DeliveryFeedConsumer(client: resources.database, source: sink, logger: resources.logger)
      let relays = (1...OutboxRelay.workersPerProcess).map { number in
        BackgroundWorker(name: "outbox-relay-\(number)") {
          await OutboxRelay(client: resources.database, sink: sink, logger: resources.logger).run()
        }
      }
      return relays + [
        BackgroundWorker(name: "scheduler") { await scheduler.run() },
        BackgroundWorker(name: "delivery-feed") { await feed.run() },
      ]
    })
}
