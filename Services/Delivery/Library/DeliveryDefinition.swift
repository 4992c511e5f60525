import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldProtos
import HeraldServerKit
import Logging

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
    // The process's providers with their breakers, shared by the handlers, the workers and the
    // metrics.
    let registry = PerProcess { resources in
      ProviderRegistry(
        store: store(resources), policy: settings.breaker, secrets: settings.secrets,
        dkimSignatureLifetime: settings.dkimSignatureLifetime, keys: settings.providerKeys, factory: providerFactory)
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Delivery_V1_DeliveryService.descriptor.fullyQualifiedService],
      migrations: migrations,
      readinessDependencies: ["ratelimit"],
      makeServices: { resources in
        [
          DeliveryService(
            store: store(resources), providers: registry(resources),
            tracking: TrackingLinks(publicURL: "", secrets: settings.secrets), smsQuietHours: settings.smsQuietHours,
            addressKeys: settings.secrets.derivedKeys(purpose: AddressToken.purpose))
        ]
      },
      makeWorkers: { resources in
        let throttle: any SendThrottle =
          throttle ?? resources.clients["ratelimit"].map {
            RateLimitThrottle(client: $0, refresh: settings.refreshInterval, logger: resources.logger)
          }
          ?? Unthrottled()
        let worker = DeliveryWorker(
          store: store(resources), providers: registry(resources), throttle: throttle, settings: settings, logger: resources.logger)
        let senders = (0..<settings.workers).map { number in
          BackgroundWorker(name: "delivery-\(number + 1)") { await worker.run() }
        }
        return senders + [BackgroundWorker(name: "provider-refresh") { await worker.runHousekeeping() }]
      },
      prepare: { resources in
        // The providers file, when set, is applied at every start (it wins over API edits of the
        // same names); then this replica loads the table.
        if let path = settings.providersFile {
          try await applyProvidersFile(path, to: store(resources), secrets: settings.secrets, logger: resources.logger)
        }
        try await registry(resources).refresh()
        let unsealed = try await store(resources).providersNeedingSealing(settings.secrets)
        if !unsealed.isEmpty {
          resources.logger.warning(
            settings.secrets.canSeal
              ? "provider secrets are stored in clear or under a key being retired: once every replica runs this version, POST /v1/secrets/seal (SealSecrets)"
              : "provider secrets are stored in clear: set \(SecretBox.variable), then, once every replica runs this version, POST /v1/secrets/seal",
            metadata: ["providers": "\(unsealed.joined(separator: ","))"])
        }
      },
      collectMetrics: { resources, scrape in
        try await collectMetrics(store(resources), providers: registry(resources), into: scrape)
      })
  }

  static func store(_ resources: ServiceResources) -> DeliveryStore {
    DeliveryStore(client: resources.database, logger: resources.logger)
  }

  /// Writes the providers and warm-up schedules of `HERALD_DELIVERY_PROVIDERS_FILE` (a secret given
  /// as the redaction marker keeps the stored one, as PutProvider does; a provider whose stored
  /// secrets are still in clear keeps them in clear until SealSecrets).
  static func applyProvidersFile(_ path: String, to store: DeliveryStore, secrets: SecretBox, logger: Logger) async throws {
    let (configs, schedules) = try ProviderConfig.loadFile(path)
    for (index, config) in configs.enumerated() {
      try await store.putProvider(named: config.name, sealingWith: secrets, keepingClear: true) { stored in
        try config.keepingStoredSecrets(of: stored, field: "providers[\(index)]")
      }
    }
    for schedule in schedules { try await store.putSchedule(schedule) }
    logger.info("providers file applied", metadata: ["providers": "\(configs.count)", "file": "\(path)"])
  }

  /// The figures read at each scrape: the queue's depth by status (through its partial indexes)
  /// and which providers' breakers are open in this process. (Event counts are counters where
  /// they happen: sends and their durations in `DeliveryWorker`, provider webhook events in
  /// `DeliveryService`.)
  static func collectMetrics(_ store: DeliveryStore, providers: ProviderRegistry, into scrape: MetricsScrape) async throws {
    let depth = try await store.queueDepth()
    for status in DeliveryStore.depthStatuses {
      scrape.gauge(
        "herald_delivery_queue_messages", [("status", status)],
        help: "Messages the queue works on (queued, sending) or that wait for an operator (dead, unknown), by status",
        depth[status] ?? 0)
    }
    let help = "Whether the provider's circuit breaker is open in this process (1) or not (0)"
    for entry in providers.all {
      let open = entry.breaker.snapshot().state == .open
      scrape.gauge("herald_delivery_breaker_open", [("provider", entry.config.name)], help: help, Int64(open ? 1 : 0))
    }
    for name in providers.removed {
      scrape.gauge("herald_delivery_breaker_open", [("provider", name)], help: help, Int64(0))
    }
  }
}
