import Foundation
import GRPCCore
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

/// What the gateway reads from its environment: the settings every process has (its back-end
/// addresses are its dependencies), plus its own.
package struct GatewayConfiguration: Sendable {
  package var common: ServiceConfiguration
  package var statusTimeout: Duration
  package var adminKey: Secret<String>?

  package init(
    host: String = "127.0.0.1", port: Int, database: DatabaseConfiguration, services: [String: ServiceAddress],
    statusTimeout: Duration = .seconds(2), adminKey: String? = nil
  ) {
    self.init(
      common: ServiceConfiguration(name: "gateway", host: host, port: port, database: database, dependencies: services),
      statusTimeout: statusTimeout, adminKey: adminKey)
  }

  package init(common: ServiceConfiguration, statusTimeout: Duration, adminKey: String?) {
    self.common = common
    self.statusTimeout = statusTimeout
    self.adminKey = adminKey.map(Secret.init)
  }

  package static func load(settings: Settings) throws -> GatewayConfiguration {
    let adminKey = settings.optionalString("HERALD_ADMIN_API_KEY")
    if let adminKey, adminKey.count < 20 || adminKey.count > 200 || adminKey.contains(where: \.isWhitespace) {
      throw ConfigurationError.malformed(
        variable: "HERALD_ADMIN_API_KEY", value: "<redacted>", expected: "20 to 200 characters without spaces")
    }
    return GatewayConfiguration(
      common: try ServiceConfiguration.load(name: "gateway", settings: settings),
      statusTimeout: try settings.duration("HERALD_STATUS_TIMEOUT", default: .seconds(2)), adminKey: adminKey)
  }
}

/// Builds the gateway: PostgreSQL (its own `gateway` schema, migrated before the server listens),
/// gRPC clients to the back-ends, and the Hummingbird router.
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
  let database = common.database.makeClient(logger: logger)
  var clients: [String: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
  for (name, address) in common.dependencies {
    clients[name] = try ServiceClientFactory.make(address: address, timeout: common.rpcTimeout)
  }
  let keys = APIKeyStore(client: database, logger: logger)
  let probe = StatusProbe(
    targets: common.dependencies.keys.sorted().map { name in
      StatusProbe.Target(name: name, address: common.dependencies[name]!, client: clients[name]!)
    },
    timeout: configuration.statusTimeout, registry: registry,
    delivery: clients["delivery"].map { Herald_Delivery_V1_DeliveryService.Client(wrapping: $0) },
    rateLimit: clients["ratelimit"].map { Herald_Ratelimit_V1_RateLimitService.Client(wrapping: $0) },
    verification: clients["verification"].map { Herald_Verification_V1_VerificationService.Client(wrapping: $0) })

  let router = Router(context: GatewayRequestContext.self)
  router.add(middleware: RequestIDMiddleware())
  router.add(middleware: ProblemMiddleware())
  router.add(middleware: MetricsMiddleware())
  router.add(middleware: LogRequestsMiddleware(.debug))
  let guarded = router.group().add(middleware: APIKeyMiddleware(keys: keys))
  SystemController(probe: probe, registry: registry).addRoutes(public: router, guarded: guarded)
  let v1 = guarded.group("v1").add(middleware: IdempotencyMiddleware(client: database, logger: logger))
  APIKeyController(keys: keys).addRoutes(to: v1)
  if let campaign = clients["campaign"] {
    SubscriberController(campaign: Herald_Campaign_V1_CampaignService.Client(wrapping: campaign)).addRoutes(to: v1)
    CampaignController(campaign: Herald_Campaign_V1_CampaignService.Client(wrapping: campaign)).addRoutes(to: v1)
  }
  if let delivery = clients["delivery"] {
    let controller = DeliveryController(delivery: Herald_Delivery_V1_DeliveryService.Client(wrapping: delivery))
    controller.addRoutes(to: v1)
    controller.addWebhookRoute(to: router)
  }
  if let rateLimit = clients["ratelimit"] {
    RateLimitController(rateLimit: Herald_Ratelimit_V1_RateLimitService.Client(wrapping: rateLimit)).addRoutes(to: v1)
  }
  if let verification = clients["verification"] {
    VerificationController(verification: Herald_Verification_V1_VerificationService.Client(wrapping: verification)).addRoutes(to: v1)
  }
  if let sync = clients["sync"] {
    SyncController(sync: Herald_Sync_V1_SyncService.Client(wrapping: sync)).addRoutes(to: v1)
  }
  try router.validate()
  registeredRoutes(router.routes.map { (method: $0.method.rawValue.lowercased(), path: "\($0.path)") })

  var app = Application(
    router: router,
    configuration: .init(address: .hostname(common.host, port: common.port), serverName: "herald-gateway"),
    services: [database] + clients.keys.sorted().map { GRPCClientService(client: clients[$0]!) },
    logger: logger)
  let runner = MigrationRunner(lockTimeout: common.migrationLockTimeout, logger: logger)
  let (adminKey, databaseWait) = (configuration.adminKey?.value, common.databaseWait)
  app.beforeServerStarts {
    try await runner.migrateWhenReachable(HeraldMigrations.gateway, client: database, wait: databaseWait)
    if let generated = try await keys.bootstrap(configuredKey: adminKey) {
      announceKey(generated)
    }
  }
  return app
}
