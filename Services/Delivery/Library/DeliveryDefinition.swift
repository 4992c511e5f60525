import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit
import Logging
import ServiceLifecycle

/// The delivery process (SPEC §3): the durable send queue, its workers and providers.
package enum DeliveryDefinition: BackEndProcess {
  package static let name = "delivery"
  package static let migrations = HeraldMigrations.delivery

  package static func loadSettings(_ environment: Settings) throws -> DeliverySettings {
    try DeliverySettings.load(environment)
  }

  package static func definition(settings: DeliverySettings) -> ServiceDefinition {
    make(settings: settings)
  }

  /// With the default settings (tests, benchmarks); each call is a fresh process's worth of state.
  package static var definition: ServiceDefinition { make() }

  /// `throttle` is asked before each send: by default the rate-limit service when its address is
  /// configured; `providerFactory` builds a provider from its definition (the real SMTP/HTTP
  /// clients unless a test swaps one).
  package static func make(
    settings: DeliverySettings = DeliverySettings(), throttle: (any SendThrottle)? = nil,
    providerFactory: ProviderRegistry.Factory? = nil
  ) -> ServiceDefinition {
    let registry = PerProcess { resources in
      ProviderRegistry(
        store: ProviderStore(client: resources.database, logger: resources.logger), policy: settings.breaker,
        factory: providerFactory)
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Delivery_V1_DeliveryService.descriptor.fullyQualifiedService],
      migrations: migrations,
      readinessDependencies: ["ratelimit"],
      makeServices: { resources in
        [DeliveryService(queue: PostgresMessageQueue(client: resources.database, logger: resources.logger), providers: registry(resources))]
      },
      makeWorkers: { resources in
        let providers = registry(resources)
        let queue = PostgresMessageQueue(client: resources.database, logger: resources.logger)
        let throttle: any SendThrottle =
          throttle ?? resources.clients["ratelimit"].map { RateLimitThrottle(client: $0, refresh: settings.refreshInterval, logger: resources.logger) } ?? Unthrottled()
        let senders = (0..<settings.workers).map { number in
          BackgroundWorker(name: "delivery-\(number + 1)") {
            await DeliveryWorker(queue: queue, providers: providers, throttle: throttle, settings: settings, logger: resources.logger).run()
          }
        }
        let housekeeping = DeliveryWorker(
          queue: queue, providers: providers, throttle: throttle, settings: settings, logger: resources.logger)
        let refresher = BackgroundWorker(name: "provider-refresh") {
          // Keeps this replica's providers in step with the table and takes back the leases of
          // workers that died; closes the providers' connections at the end.
          while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await BackgroundWorker.pause(settings.refreshInterval)
            do {
              try await providers.refresh()
              try await housekeeping.reclaimExpiredLeases()
            } catch {
              resources.logger.error("provider reload or lease reclaim failed", metadata: ["error": "\(error)"])
            }
          }
          await providers.shutdown()
        }
        return senders + [refresher]
      },
      prepare: { resources in
        // The providers file, when set, is applied at every start (it wins over API edits of the
        // same names); then this replica loads the table.
        if let path = settings.providersFile {
          let (configs, schedules) = try ProviderConfig.loadFile(path)
          let store = ProviderStore(client: resources.database, logger: resources.logger)
          for config in configs { try await store.put(config) }
          for schedule in schedules { try await store.putSchedule(schedule) }
          resources.logger.info("providers file applied", metadata: ["providers": "\(configs.count)", "file": "\(path)"])
        }
        try await registry(resources).refresh()
      })
  }
}
