import Foundation
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Hummingbird
import Logging
import PostgresNIO
import Prometheus
import ServiceLifecycle

/// The gateway process (SPEC §7): the REST API over the back-ends' gRPC services.
package enum GatewayDefinition: HeraldProcess {
  package static let name = "gateway"
  package static let migrations = HeraldMigrations.gateway
  package static var probeChecks: String { GatewayProbe.checks }

  package static func probe(_ address: ServiceAddress) async -> ProbeResult {
    await GatewayProbe.http(address)
  }

  package static func loadSettings(_ environment: Settings) throws -> GatewaySettings {
    try GatewaySettings.load(environment)
  }

  package static func serve(
    settings: GatewaySettings, configuration: ServiceConfiguration, metrics: PrometheusCollectorRegistry
  ) async throws {
    try await buildGateway(configuration: GatewayConfiguration(common: configuration, settings: settings), registry: metrics)
      .runService()
  }
}

/// What the gateway runs with: the settings every process has (its back-end addresses are its
/// dependencies) and its own.
package struct GatewayConfiguration: Sendable {
  package var common: ServiceConfiguration
  package var settings: GatewaySettings

  package init(common: ServiceConfiguration, settings: GatewaySettings) {
    self.common = common
    self.settings = settings
  }

  package init(
    host: String = "127.0.0.1", port: Int, database: DatabaseConfiguration, services: [String: ServiceAddress],
    statusTimeout: Duration = .seconds(2), adminKey: String? = nil, publicRatePerMinute: Int = 600
  ) {
    self.init(
      common: ServiceConfiguration(name: "gateway", host: host, port: port, database: database, dependencies: services),
      settings: GatewaySettings(statusTimeout: statusTimeout, adminKey: adminKey, publicRatePerMinute: publicRatePerMinute))
  }
}

/// Builds the gateway: PostgreSQL (its own `gateway` schema, migrated before the server listens),
/// gRPC clients to the back-ends, its own API-key service on an in-process transport, the metrics
/// listener, and the router: the routes generated from the protos' `google.api.http` bindings
/// (`RESTRoute.bound`) and the few described by hand (health, status, metrics, the document, the
/// CSV import, provider webhooks).
package func buildGateway(
  configuration: GatewayConfiguration,
  registry: PrometheusCollectorRegistry,
  logger: Logger = Logger(label: "herald.gateway"),
  announceKey: @escaping @Sendable (String) -> Void = { key in
    print("herald gateway: created the bootstrap admin API key (shown once, store it now): \(key)")
  },
  registeredRoutes: @Sendable ([(method: String, path: String)]) -> Void = { _ in }
) throws -> some ApplicationProtocol {
  let common = configuration.common
  let description = try APIDescription.shared.get()
  let applicationName = DatabaseConfiguration.applicationName(service: "gateway")
  let database = common.database.makeClient(logger: logger, applicationName: applicationName)
  let store = GatewayStore(client: database, logger: logger)

  var backEnds: [String: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
  for (name, address) in common.dependencies {
    backEnds[name] = try ServiceClientFactory.make(address: address, timeout: common.rpcTimeout)
  }
  // The gateway's own gRPC service, reached in-process through the same interceptors as the others.
  let inProcess = InProcessTransport()
  let health = HealthStatus(services: [Herald_Gateway_V1_APIKeyService.descriptor.fullyQualifiedService])
  let localServer = GRPCServer(
    transport: inProcess.server, services: [APIKeyService(store: store)],
    interceptors: [
      RequestLoggingInterceptor(logger: logger), ServiceGuardInterceptor(health: health, service: "gateway", logger: logger),
      RequestCheckInterceptor(),
    ])
  let local = GRPCClient(transport: inProcess.client, interceptors: [RequestIDClientInterceptor()])
  let clients = GatewayClients(backEnds: backEnds, local: local)

  let probe = StatusProbe(
    targets: backEnds.keys.sorted().compactMap { name in
      guard let address = common.dependencies[name], let client = backEnds[name] else { return nil }
      return StatusProbe.Target(name: name, address: address, client: client)
    },
    timeout: configuration.settings.statusTimeout, registry: registry,
    delivery: backEnds["delivery"].map { Herald_Delivery_V1_DeliveryService.Client(wrapping: $0) },
    rateLimit: backEnds["ratelimit"].map { Herald_Ratelimit_V1_RateLimitService.Client(wrapping: $0) },
    verification: backEnds["verification"].map { Herald_Verification_V1_VerificationService.Client(wrapping: $0) })

  let documented = (description.root["paths"]?.members ?? []).map { path, item in
    (path: path, methods: (item.members ?? []).map(\.key))
  }
  let router = Router(context: GatewayRequestContext.self)
  router.add(middleware: RequestIDMiddleware())
  router.add(middleware: ProblemMiddleware(routes: RouteIndex(paths: documented)))
  router.add(middleware: MetricsMiddleware())
  router.add(middleware: LogRequestsMiddleware(.debug))
  let guarded = router.group().add(middleware: APIKeyMiddleware(keys: store))
  SystemRoutes(probe: probe, registry: registry).register(public: router, guarded: guarded)
  let api = guarded.group().add(middleware: IdempotencyMiddleware(store: store))
  // Routes without a key, rate-limited per client address: unsubscribe links by every request,
  // provider webhooks and tracking links by the requests refused for their signature.
  let publicLimiter = PublicRouteLimiter(perMinute: configuration.settings.publicRatePerMinute)
  let publicRoutes = router.group().add(middleware: PublicRouteLimitMiddleware(limiter: publicLimiter))
  let webhookRoutes = router.group().add(middleware: PublicRouteLimitMiddleware(limiter: publicLimiter, onlyRefused: .unauthorized))
  let trackingRoutes = router.group().add(middleware: PublicRouteLimitMiddleware(limiter: publicLimiter, onlyRefused: .notFound))
  try RESTRouter(description: description, clients: clients, defaultTimeout: common.rpcTimeout)
    .register(RESTRoute.bound, on: api)
  if let campaign = backEnds["campaign"] {
    try SubscriberImportRoute(campaign: Herald_Campaign_V1_CampaignService.Client(wrapping: campaign), description: description)
      .register(on: api)
    UnsubscribeRoutes(campaign: Herald_Campaign_V1_CampaignService.Client(wrapping: campaign)).register(on: publicRoutes)
  }
  if let delivery = backEnds["delivery"] {
    ProviderWebhookRoute(delivery: Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery)).register(on: webhookRoutes)
    WhatsAppWebhookRoute(delivery: Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery)).register(on: webhookRoutes)
    InboundRoutes(delivery: Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery), publicURL: configuration.settings.publicURL)
      .register(on: webhookRoutes)
    // Mail privacy proxies fetch many recipients' pixels from few addresses: only links that are
    // not genuine count against the limit (delivery caps the events of one message).
    TrackingRoutes(delivery: Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery)).register(on: trackingRoutes)
  }
  try router.validate()
  // The routes the router holds, their paths written as the document writes them.
  // (The router writes a parameter `:p2` as `{p2}`.)
  let byRouterPath = Dictionary(
    documented.map { documentedPath in
      let routerPath = RESTRouter.hummingbirdPath(documentedPath.path).split(separator: "/")
        .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
      return (routerPath, documentedPath.path)
    }, uniquingKeysWith: { a, _ in a })
  registeredRoutes(
    router.routes.map { route in
      let path = String("\(route.path)".drop { $0 == "/" })
      return (method: route.method.rawValue.lowercased(), path: byRouterPath[path] ?? "/" + path)
    })

  var services: [any Service] = [database]
  services += backEnds.keys.sorted().compactMap { backEnds[$0].map(GRPCClientService.init) }
  services += [GRPCClientService(client: local), GRPCServerService(server: localServer, health: health, logger: logger)]
  if let address = common.metrics {
    services.append(
      MetricsEndpoint(
        host: address.host, port: address.port, registry: registry,
        collectors: [
          DatabasePoolMetrics.named(
            database: database, applicationName: applicationName,
            maximum: common.database.client.options.maximumConnections, logger: logger)
        ], logger: logger))
  }
  var app = Application(
    router: router,
    server: .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()])),
    configuration: .init(address: .hostname(common.host, port: common.port), serverName: "herald-gateway"),
    services: services,
    logger: logger)
  let runner = MigrationRunner(lockTimeout: common.migrationLockTimeout, logger: logger)
  let (adminKey, databaseWait) = (configuration.settings.adminKey?.value, common.databaseWait)
  app.beforeServerStarts {
    // Stopping while the database is awaited (or stops answering) ends the wait: start-up is
    // cancelled, and left behind if a query ignores that; the server then starts and stops at
    // once, NOT_SERVING throughout.
    let started = try await untilShutdown("start-up", .startUp, logger: logger) {
      try await runner.migrateWhenReachable(HeraldMigrations.gateway, client: database, wait: databaseWait)
      if let generated = try await store.bootstrapAdminKey(configuredKey: adminKey) {
        announceKey(generated)
      }
    }
    if started { health.setAll(.serving) }
  }
  return app
}
