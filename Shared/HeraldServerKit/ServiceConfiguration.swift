import HeraldCore
import HeraldPostgres

/// The six Herald processes, their default ports and who calls whom (SPEC §1).
package enum ServiceCatalog {
  package static let backEnds = ["campaign", "delivery", "ratelimit", "sync", "verification"]

  package static let defaultPorts: [String: Int] = [
    "campaign": 7101, "delivery": 7102, "ratelimit": 7103, "sync": 7104, "verification": 7105, "gateway": 8080,
  ]

  /// Dependency edges (no cycles): gateway → all; campaign → delivery; delivery → ratelimit;
  /// sync → campaign; verification → all back-ends (health checks).
  package static let calls: [String: [String]] = [
    "campaign": ["delivery"],
    "delivery": ["ratelimit"],
    "ratelimit": [],
    "sync": ["campaign"],
    "verification": ["campaign", "delivery", "ratelimit", "sync"],
    "gateway": backEnds,
  ]

  /// The environment variable holding a service's `host:port`, e.g. `HERALD_DELIVERY_ADDR`.
  package static func addressVariable(_ service: String) -> String {
    "HERALD_\(service.uppercased())_ADDR"
  }
}

/// What every Herald process reads from its environment.
package struct ServiceConfiguration: Sendable {
  package var name: String
  package var host: String
  package var port: Int
  package var database: DatabaseConfiguration
  package var rpcTimeout: Duration
  package var migrationLockTimeout: Duration
  package var databaseWait: Duration
  /// Addresses of the services this one calls.
  package var dependencies: [String: ServiceAddress]
  package var logLevel: LogLevelSetting
  /// Where `/metrics` is served (`HERALD_METRICS_HOST`, `HERALD_METRICS_PORT`); nil: not served.
  package var metrics: ServiceAddress?

  package init(
    name: String, host: String = "127.0.0.1", port: Int, database: DatabaseConfiguration,
    rpcTimeout: Duration = .seconds(5), migrationLockTimeout: Duration = .seconds(60),
    databaseWait: Duration = .seconds(60), dependencies: [String: ServiceAddress] = [:],
    logLevel: LogLevelSetting = .info, metrics: ServiceAddress? = nil
  ) {
    self.name = name
    self.host = host
    self.port = port
    self.database = database
    self.rpcTimeout = rpcTimeout
    self.migrationLockTimeout = migrationLockTimeout
    self.databaseWait = databaseWait
    self.dependencies = dependencies
    self.logLevel = logLevel
    self.metrics = metrics
  }

  /// The metrics port when `HERALD_METRICS_PORT` is not set: the service's port + 1000 (7101 →
  /// 8101, the gateway's 8080 → 9080); with an ephemeral service port (0), an ephemeral one too.
  package static func defaultMetricsPort(servicePort: Int) -> Int {
    servicePort == 0 || servicePort + 1000 > 65535 ? 0 : servicePort + 1000
  }

  /// Reads the configuration of process `name`; throws `ConfigurationError` naming the variable.
  package static func load(name: String, settings: Settings) throws -> ServiceConfiguration {
    var dependencies: [String: ServiceAddress] = [:]
    for dependency in ServiceCatalog.calls[name] ?? [] {
      let variable = ServiceCatalog.addressVariable(dependency)
      dependencies[dependency] = try settings.address(variable, purpose: "address of the \(dependency) service")
    }
    let host = settings.string("HERALD_HOST", default: "127.0.0.1")
    let port = try settings.port("HERALD_PORT", default: ServiceCatalog.defaultPorts[name] ?? 8080)
    let metricsPort = try settings.int(
      "HERALD_METRICS_PORT", default: defaultMetricsPort(servicePort: port), range: 0...65535)
    return ServiceConfiguration(
      name: name,
      host: host,
      port: port,
      database: try DatabaseConfiguration.load(settings: settings),
      rpcTimeout: try settings.duration("HERALD_RPC_TIMEOUT", default: .seconds(5)),
      migrationLockTimeout: try settings.duration("HERALD_MIGRATION_LOCK_TIMEOUT", default: .seconds(60)),
      databaseWait: try settings.duration("HERALD_DATABASE_WAIT", default: .seconds(60)),
      dependencies: dependencies,
      logLevel: try settings.logLevel(),
      metrics: ServiceAddress(host: settings.string("HERALD_METRICS_HOST", default: host), port: metricsPort)
    )
  }
}
