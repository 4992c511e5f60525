import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit

/// The campaign process (SPEC §2): subscribers and consent, lists and segments, templates,
/// campaigns, and the background relay (outbox → delivery), scheduler and analytics feed.
package enum CampaignDefinition: BackEndProcess {
  package static let name = "campaign"
  package static let migrations = HeraldMigrations.campaign

  /// With the default settings (tests, benchmarks).
  package static var definition: ServiceDefinition { definition(settings: CampaignSettings()) }

  package static func loadSettings(_ environment: Settings) throws -> CampaignSettings {
    try CampaignSettings.load(environment)
  }

  package static func definition(settings: CampaignSettings) -> ServiceDefinition {
    ServiceDefinition(
    name: name,
    grpcServices: [Herald_Campaign_V1_CampaignService.descriptor.fullyQualifiedService],
    migrations: migrations,
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
      let relays = (0..<settings.relayWorkers).map { number in
        BackgroundWorker(name: "outbox-relay-\(number + 1)") {
          await OutboxRelay(client: resources.database, sink: sink, logger: resources.logger).run()
        }
      }
      return relays + [
        BackgroundWorker(name: "scheduler") { await scheduler.run(interval: settings.schedulerInterval) },
        BackgroundWorker(name: "delivery-feed") { await feed.run() },
      ]
    })
  }
}
