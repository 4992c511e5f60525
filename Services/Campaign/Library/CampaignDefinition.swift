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
    // Each recipient's unsubscribe link: made by the relay, checked by the service, required by
    // the scheduler and the send for e-mail.
    let links = UnsubscribeLinks(publicURL: settings.publicURL, secrets: settings.secrets)
    // The open pixel and click redirects of campaigns that track them (checked by delivery).
    let tracking = TrackingLinks(publicURL: settings.publicURL, secrets: settings.secrets)
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Campaign_V1_CampaignService.descriptor.fullyQualifiedService],
      migrations: migrations,
      readinessDependencies: ["delivery"],
      makeServices: { resources in
        [
          CampaignService(
            store: CampaignStore(client: resources.database, logger: resources.logger), links: links, results: settings.results,
            providers: resources.clients["delivery"].map(DeliverySink.init))
        ]
      },
      makeWorkers: { resources in
        guard let delivery = resources.clients["delivery"] else {
          throw RPCError(code: .failedPrecondition, message: "campaign needs the delivery service's address to relay its outbox")
        }
        let sink = DeliverySink(client: delivery)
        let scheduler = CampaignScheduler(client: resources.database, links: links, providers: sink, logger: resources.logger)
        let feed = DeliveryFeedConsumer(
          client: resources.database, source: sink, logger: resources.logger, deliverabilityGuard: settings.deliverabilityGuard)
        let relays = (0..<settings.relayWorkers).map { number in
          BackgroundWorker(name: "outbox-relay-\(number + 1)") {
            await OutboxRelay(
              client: resources.database, sink: sink, links: links, tracking: tracking, logger: resources.logger
            ).run()
          }
        }
        let inbound = InboundFeedConsumer(client: resources.database, source: sink, logger: resources.logger)
        let holds = CampaignHoldSync(
          store: CampaignStore(client: resources.database, logger: resources.logger), sink: sink, logger: resources.logger)
        let decider = ABTestDecider(client: resources.database, logger: resources.logger)
        let snapshots = MetricSnapshotter(client: resources.database, logger: resources.logger)
        // Journeys (SPEC §12): events into enrolments, due steps performed, watched segments.
        let triggers = JourneyTriggerProcessor(client: resources.database, logger: resources.logger, batchSize: settings.journeys.batchSize)
        let journeySchedulers = (0..<settings.journeys.workers).flatMap { number in
          [
            BackgroundWorker(name: "journey-scheduler-\(number + 1)") {
              await JourneyScheduler(client: resources.database, settings: settings.journeys, logger: resources.logger).run()
            },
            BackgroundWorker(name: "journey-relay-\(number + 1)") {
              await JourneyRelay(
                client: resources.database, sink: sink, links: links, tracking: tracking, batchSize: settings.journeys.batchSize,
                logger: resources.logger
              ).run()
            },
          ]
        }
        let segments = SegmentWatcher(client: resources.database, interval: settings.journeys.segmentInterval, logger: resources.logger)
        return relays + journeySchedulers + [
          BackgroundWorker(name: "journey-triggers") { await triggers.run() },
          BackgroundWorker(name: "journey-segments") { await segments.run() },
          BackgroundWorker(name: "scheduler") { await scheduler.run(interval: settings.schedulerInterval) },
          BackgroundWorker(name: "delivery-feed") { await feed.run() },
          BackgroundWorker(name: "inbound-feed") { await inbound.run() },
          BackgroundWorker(name: "delivery-holds") { await holds.run() },
          BackgroundWorker(name: "ab-tests") { await decider.run(interval: settings.schedulerInterval) },
          BackgroundWorker(name: "metric-snapshots") { await snapshots.run() },
        ]
      },
      collectMetrics: { resources, scrape in
        try await collectMetrics(CampaignStore(client: resources.database, logger: resources.logger), into: scrape)
      })
  }

  /// The figures read at each scrape: the outbox still to relay and campaigns by status. (Event
  /// counts are counters where they happen: `OutboxRelay`, `DeliveryFeedConsumer`, the import.)
  static func collectMetrics(_ store: CampaignStore, into scrape: MetricsScrape) async throws {
    let pending = try await store.pendingOutbox()
    scrape.gauge(
      "herald_campaign_outbox_pending_chunks", help: "Outbox chunks not yet relayed (of sending and paused campaigns)",
      pending.chunks)
    scrape.gauge(
      "herald_campaign_outbox_pending_entries", help: "Outbox entries not yet relayed or settled (of sending and paused campaigns)",
      pending.entries)
    scrape.gauge(
      "herald_campaign_journey_sends_pending", help: "Journey sends recorded and not yet handed to delivery (shared)",
      try await store.pendingJourneySends())
    let campaigns = try await store.campaignCountsByStatus()
    for status in CampaignRecord.statuses {
      scrape.gauge("herald_campaign_campaigns", [("status", status)], help: "Campaigns by status", campaigns[status] ?? 0)
    }
  }
}
