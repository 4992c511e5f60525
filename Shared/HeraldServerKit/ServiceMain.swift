import Foundation
import HeraldCore
import HeraldPostgres
import Prometheus
import ServiceLifecycle

/// A Herald executable, as `ServiceMain.run` starts it: its name, its schema's migrations, its own
/// settings (`<Name>Settings`, every `HERALD_<NAME>_*` variable parsed and checked) and how it
/// serves.
package protocol HeraldProcess: SendableMetatype {
  associatedtype ProcessSettings: Sendable
  /// `campaign`, `delivery`, ..., `gateway`: the executable's name, logger label and schema.
  static var name: String { get }
  static var migrations: MigrationSet { get }
  /// What `probe` checks, for the usage text.
  static var probeChecks: String { get }
  /// `<name> probe`: is the process at `address` healthy?
  static func probe(_ address: ServiceAddress) async -> ProbeResult
  /// Reads the process's own variables; a missing or malformed one throws naming it.
  static func loadSettings(_ environment: Settings) throws -> ProcessSettings
  /// Runs the process until SIGTERM or SIGINT.
  static func serve(
    settings: ProcessSettings, configuration: ServiceConfiguration, metrics: PrometheusCollectorRegistry
  ) async throws
}

/// A back-end service: a `ServiceDefinition` run by the common `ServiceHost`.
package protocol BackEndProcess: HeraldProcess {
  static func definition(settings: ProcessSettings) -> ServiceDefinition
}

extension BackEndProcess {
  package static var probeChecks: String { "its gRPC health reports SERVING" }

  package static func probe(_ address: ServiceAddress) async -> ProbeResult {
    await HealthProbe.grpc(address)
  }

  package static func serve(
    settings: ProcessSettings, configuration: ServiceConfiguration, metrics: PrometheusCollectorRegistry
  ) async throws {
    let host = try ServiceHost(definition: definition(settings: settings), configuration: configuration, metrics: metrics)
    try await host.makeServiceGroup().run()
  }
}

/// The `main` of every Herald executable: runs `probe`, `migrate` or `help` when asked, otherwise
/// reads the configuration (the common variables, then the process's own), sets up logging and
/// metrics, and serves until SIGTERM/SIGINT. A configuration error is printed naming the
/// variable and the process exits with status 1.
package enum ServiceMain {
  package static func run<Process: HeraldProcess>(_ process: Process.Type) async -> Never {
    await ProcessCommand.runUnlessServe(
      executable: Process.name, migrations: Process.migrations, probeChecks: Process.probeChecks,
      probe: { await Process.probe($0) })
    let environment = Settings()
    do {
      let configuration = try ServiceConfiguration.load(name: Process.name, settings: environment)
      let settings = try Process.loadSettings(environment)
      let registry = Observability.bootstrap(service: Process.name, level: configuration.logLevel)
      try await Process.serve(settings: settings, configuration: configuration, metrics: registry)
      exit(0)
    } catch {
      FileHandle.standardError.write(Data("herald \(Process.name): \(error)\n".utf8))
      exit(1)
    }
  }
}
