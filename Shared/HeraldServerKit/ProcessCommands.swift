import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import Logging
import PostgresNIO

/// What a Herald executable is asked to do by its arguments. Besides serving (the default), every
/// executable can probe a running copy of itself (container health checks have no grpcurl) and
/// apply its schema's migrations and exit (a Kubernetes init step; the advisory lock makes that
/// safe with several replicas starting at once).
package enum ProcessCommand: Equatable, Sendable {
  case serve
  /// Health of the process at `address`; nil means 127.0.0.1 on this process's own `HERALD_PORT`.
  case probe(address: ServiceAddress?)
  case migrate
  case help

  package static func parse(_ arguments: [String]) throws(ProcessCommandError) -> ProcessCommand {
    guard let first = arguments.first else { return .serve }
    let rest = Array(arguments.dropFirst())
    switch first {
    case "serve", "migrate", "help", "-h", "--help":
      guard rest.isEmpty else { throw ProcessCommandError("'\(first)' takes no arguments, got '\(rest.joined(separator: " "))'") }
      switch first {
      case "serve": return .serve
      case "migrate": return .migrate
      default: return .help
      }
    case "probe":
      guard rest.count <= 1 else { throw ProcessCommandError("'probe' takes at most one HOST:PORT, got '\(rest.joined(separator: " "))'") }
      guard let text = rest.first else { return .probe(address: nil) }
      guard let address = ServiceAddress(text) else {
        throw ProcessCommandError("'probe' needs HOST:PORT (e.g. 127.0.0.1:7101), got '\(text)'")
      }
      return .probe(address: address)
    default:
      throw ProcessCommandError("unknown command '\(first)'")
    }
  }

  package static func usage(executable: String, schema: String, probeChecks: String) -> String {
    """
    usage: \(executable) [serve | probe [HOST:PORT] | migrate | help]
      serve     run the service until SIGTERM or SIGINT (the default)
      probe     exit 0 if \(probeChecks) at HOST:PORT (default 127.0.0.1:$HERALD_PORT), else 1
      migrate   apply the \(schema) schema's migrations (reads HERALD_DATABASE_URL) and exit
    Configuration comes from environment variables (README, "Configuration").

    """
  }

  /// Reads the process's arguments and runs what they ask unless it is `.serve`, then exits with
  /// its status; returns for `.serve`. A bad argument prints the error and the usage and exits
  /// with 2; other errors are printed prefixed with `herald <executable>:`.
  package static func runUnlessServe(
    executable: String, migrations: MigrationSet, probeChecks: String, probe: @Sendable (ServiceAddress) async -> ProbeResult
  ) async {
    let command: ProcessCommand
    do {
      command = try parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
      fail(executable, "\(error)\n\(usage(executable: executable, schema: migrations.schema, probeChecks: probeChecks))", status: 2)
    }
    switch command {
    case .serve:
      return
    case .help:
      print(usage(executable: executable, schema: migrations.schema, probeChecks: probeChecks), terminator: "")
      exit(0)
    case .probe(let given):
      let settings = Settings()
      let address: ServiceAddress
      do {
        address =
          try given
          ?? ServiceAddress(host: "127.0.0.1", port: settings.port("HERALD_PORT", default: ServiceCatalog.defaultPorts[executable] ?? 8080))
      } catch {
        fail(executable, "\(error)")
      }
      let result = await probe(address)
      print("\(executable) at \(address): \(result.message)")
      exit(result.healthy ? 0 : 1)
    case .migrate:
      do {
        let settings = Settings()
        let logLevel = try settings.logLevel()
        _ = Observability.bootstrap(service: executable, level: logLevel)
        let database = try DatabaseConfiguration.load(settings: settings, poolSize: 1)
        let lockTimeout = try settings.duration("HERALD_MIGRATION_LOCK_TIMEOUT", default: .seconds(60))
        let wait = try settings.duration("HERALD_DATABASE_WAIT", default: .seconds(60))
        let logger = Logger(label: "herald.\(executable)")
        let client = database.makeClient(logger: logger)
        let applied = try await withThrowingDiscardingTaskGroup { group in
          group.addTask { await client.run() }
          defer { group.cancelAll() }
          let runner = MigrationRunner(lockTimeout: lockTimeout, logger: logger)
          return try await runner.migrateWhenReachable(migrations, client: client, wait: wait)
        }
        print(
          applied.isEmpty
            ? "\(executable): schema \(migrations.schema) is current"
            : "\(executable): applied \(applied.count) migration(s) to schema \(migrations.schema): \(applied.map(String.init).joined(separator: ", "))"
        )
        exit(0)
      } catch {
        fail(executable, "\(error)")
      }
    }
  }

  private static func fail(_ executable: String, _ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("herald \(executable): \(message)\n".utf8))
    exit(status)
  }
}

package struct ProcessCommandError: Error, CustomStringConvertible {
  package var description: String
  init(_ description: String) { self.description = description }
}

/// What a probe found.
package struct ProbeResult: Sendable, Equatable {
  package var healthy: Bool
  package var message: String

  package init(healthy: Bool, message: String) {
    self.healthy = healthy
    self.message = message
  }
}

package enum HealthProbe {
  /// `grpc.health.v1.Health/Check` for the whole process (service ""); healthy only on SERVING.
  package static func grpc(_ address: ServiceAddress, service: String = "", timeout: Duration = .seconds(3)) async -> ProbeResult {
    let started = ContinuousClock.now
    do {
      let transport = try HTTP2ClientTransport.Posix(
        target: .dns(host: address.host, port: address.port), transportSecurity: .plaintext)
      let status = try await withGRPCClient(transport: transport) { client in
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = service
        return try await Grpc_Health_V1_Health.Client(wrapping: client)
          .check(request, options: .timeout(timeout)).status
      }
      let elapsed = Int((ContinuousClock.now - started).milliseconds.rounded())
      return ProbeResult(healthy: status == .serving, message: "\(status.name) (\(elapsed) ms)")
    } catch {
      return ProbeResult(healthy: false, message: "no health answer: \(RPCError.describe(error))")
    }
  }
}
