import Foundation
import HeraldCore
import Logging
import NIOSSL
import PostgresNIO

/// How a service reaches PostgreSQL, parsed from `HERALD_DATABASE_URL`.
///
/// `postgres://user:password@host:port/database?sslmode=MODE&sslrootcert=PATH`, or a Unix socket
/// folder as `postgres://user@/database?host=/path/to/socket-dir`.
///
/// `sslmode` as in libpq: `disable`; `allow`/`prefer` (the default) and `require` encrypt without
/// checking the server's certificate (`require` with `sslrootcert` checks it as `verify-ca` does);
/// `verify-ca` checks it against `sslrootcert` (a PEM file), `verify-full` the host name as well.
/// Unlike libpq, which then reads ~/.postgresql/root.crt, no `sslrootcert` means the system's roots.
package struct DatabaseConfiguration: Sendable {
  package var client: PostgresClient.Configuration
  package var database: String

  package init(client: PostgresClient.Configuration) {
    self.client = client
    self.database = client.database ?? client.username
  }

  package init(url text: String, variable: String = "HERALD_DATABASE_URL", poolSize: Int = 10) throws {
    func malformed(_ why: String) -> ConfigurationError {
      // The URL may hold a password, so it is never echoed.
      .malformed(variable: variable, value: "<redacted>", expected: "a postgres:// URL (\(why))")
    }
    guard let components = URLComponents(string: text),
      let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
    else { throw malformed("scheme must be postgres or postgresql") }
    guard let user = components.user, !user.isEmpty else { throw malformed("no user name") }
    let database = String(components.path.drop(while: { $0 == "/" }))
    guard !database.isEmpty else { throw malformed("no database name in the path") }
    let query = Dictionary(
      (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
    let password = components.password?.removingPercentEncoding

    var configuration: PostgresClient.Configuration
    if let socketFolder = query["host"], socketFolder.hasPrefix("/") {
      let port = components.port ?? 5432
      configuration = .init(
        unixSocketPath: "\(socketFolder)/.s.PGSQL.\(port)", username: user, password: password,
        database: database)
    } else {
      guard let host = components.host, !host.isEmpty else { throw malformed("no host") }
      var settings = TLSConfiguration.makeClientConfiguration()
      let rootCertificate = query["sslrootcert"].flatMap { $0.isEmpty ? nil : $0 }
      if let rootCertificate {
        guard FileManager.default.isReadableFile(atPath: rootCertificate) else {
          throw malformed("sslrootcert '\(rootCertificate)' is not a readable file")
        }
        settings.trustRoots = .file(rootCertificate)
      }
      let tls: PostgresClient.Configuration.TLS
      switch query["sslmode"] ?? "prefer" {
      case "disable":
        tls = .disable
      case "prefer", "allow":
        settings.certificateVerification = .none
        tls = .prefer(settings)
      case "require":
        // As libpq: with a root certificate given, `require` checks the chain like `verify-ca`.
        settings.certificateVerification = rootCertificate == nil ? .none : .noHostnameVerification
        tls = .require(settings)
      case "verify-ca":
        settings.certificateVerification = .noHostnameVerification
        tls = .require(settings)
      case "verify-full":
        tls = .require(settings)
      case let other:
        throw malformed("unknown sslmode '\(other)' (disable, allow, prefer, require, verify-ca or verify-full)")
      }
      configuration = .init(
        host: host, port: components.port ?? 5432, username: user, password: password,
        database: database, tls: tls)
    }
    configuration.options.maximumConnections = poolSize
    configuration.options.connectTimeout = .seconds(5)
    self.init(client: configuration)
  }

  /// `HERALD_DATABASE_URL` and `HERALD_DATABASE_POOL_SIZE` (default 10).
  package static func load(settings: Settings, poolSize defaultPoolSize: Int = 10) throws -> DatabaseConfiguration {
    let poolSize = try settings.int("HERALD_DATABASE_POOL_SIZE", default: defaultPoolSize, range: 1...500)
    let url = try settings.string("HERALD_DATABASE_URL", purpose: "the PostgreSQL connection URL")
    return try DatabaseConfiguration(url: url, poolSize: poolSize)
  }

  /// A client whose connections carry `applicationName` (at most 63 bytes, as PostgreSQL keeps
  /// it), so `pg_stat_activity` tells them apart.
  package func makeClient(logger: Logger, applicationName: String? = nil) -> PostgresClient {
    var configuration = client
    if let applicationName {
      configuration.options.additionalStartupParameters.append(
        ("application_name", String(decoding: applicationName.utf8.prefix(63), as: UTF8.self)))
    }
    return PostgresClient(configuration: configuration, backgroundLogger: logger)
  }

  /// The `application_name` of one process of `service`: `herald-<service>-<8 hex digits>`.
  package static func applicationName(service: String) -> String {
    "herald-\(service)-\(UUID().uuidString.prefix(8).lowercased())"
  }
}
