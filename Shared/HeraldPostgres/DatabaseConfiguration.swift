import Foundation
import HeraldCore
import Logging
import PostgresNIO

/// How a service reaches PostgreSQL, parsed from `HERALD_DATABASE_URL`.
///
/// `postgres://user:password@host:port/database?sslmode=disable|prefer|require`, or a Unix socket
/// folder as `postgres://user@/database?host=/path/to/socket-dir`.
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
      let tls: PostgresClient.Configuration.TLS
      switch query["sslmode"] ?? "prefer" {
      case "disable": tls = .disable
      case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
      case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
      case let other: throw malformed("unknown sslmode '\(other)'")
      }
      configuration = .init(
        host: host, port: components.port ?? 5432, username: user, password: password,
        database: database, tls: tls)
    }
    configuration.options.maximumConnections = poolSize
    configuration.options.connectTimeout = .seconds(5)
    self.init(client: configuration)
  }

  package func makeClient(logger: Logger) -> PostgresClient {
    PostgresClient(configuration: client, backgroundLogger: logger)
  }
}

extension Error {
  /// The server's error, also when it is wrapped in a transaction error.
  package var postgresError: PSQLError? {
    if let error = self as? PSQLError { return error }
    return (self as? PostgresTransactionError)?.closureError?.postgresError
  }

  /// The SQLSTATE of a PostgreSQL error (`23505` is a unique violation), if this is one.
  package var sqlState: String? {
    postgresError?.serverInfo?[.sqlState]
  }

  /// The constraint a PostgreSQL error names, if any.
  package var constraintName: String? {
    postgresError?.serverInfo?[.constraintName]
  }

  /// A description of a database error that keeps the server's message (PSQLError's own
  /// description is blank on purpose) without the query's bound values.
  package var databaseMessage: String {
    guard let error = postgresError else { return String(describing: self) }
    if let message = error.serverInfo?[.message] {
      let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
      return message + state
    }
    return "\(error.code)"
  }
}

extension AsyncSequence {
  /// Every element, in order (e.g. the decoded rows of a query).
  package func elements() async throws -> [Element] {
    var elements: [Element] = []
    for try await element in self { elements.append(element) }
    return elements
  }
}
