import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle

/// Runs a back-end service in-process on a free port for the duration of `body`; by default
/// `body` starts once the service reports SERVING.
package func withRunningService<T: Sendable>(
  _ definition: ServiceDefinition,
  databaseURL: String,
  dependencies: [String: ServiceAddress] = [:],
  waitUntilServing: Bool = true,
  _ body: (_ port: Int, _ host: ServiceHost) async throws -> T
) async throws -> T {
  var logger = Logger(label: "test.\(definition.name)")
  logger.logLevel = .warning
  let configuration = ServiceConfiguration(
    name: definition.name, port: 0, database: try DatabaseConfiguration(url: databaseURL),
    rpcTimeout: .seconds(5), databaseWait: .seconds(10), dependencies: dependencies)
  let host = try ServiceHost(definition: definition, configuration: configuration, logger: logger)
  let group = host.makeServiceGroup(signals: [])
  return try await withThrowingTaskGroup(of: Void.self) { tasks in
    tasks.addTask { try await group.run() }
    do {
      let port = try await host.listeningPort()
      if waitUntilServing {
        try await eventually("\(definition.name) to report SERVING") { host.health.status(of: "") == .serving }
      }
      let result = try await body(port, host)
      await group.triggerGracefulShutdown()
      try await tasks.waitForAll()
      return result
    } catch {
      await group.triggerGracefulShutdown()
      throw error
    }
  }
}

/// A gRPC client to `127.0.0.1:port`, connected for the duration of `body`.
package func withClient<T: Sendable>(
  port: Int, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> T
) async throws -> T {
  let client = try ServiceClientFactory.make(address: ServiceAddress(host: "127.0.0.1", port: port), timeout: .seconds(10))
  return try await withThrowingTaskGroup(of: Void.self) { tasks in
    tasks.addTask { try await client.runConnections() }
    defer { client.beginGracefulShutdown() }
    return try await body(client)
  }
}

/// A PostgreSQL client for `url`, running for the duration of `body`.
@discardableResult
package func withDatabase<T: Sendable>(_ url: String, _ body: (PostgresClient) async throws -> T) async throws -> T {
  let client = try DatabaseConfiguration(url: url, poolSize: 4).makeClient(logger: Logger(label: "test.db"))
  return try await withThrowingTaskGroup(of: Void.self) { tasks in
    tasks.addTask { await client.run() }
    defer { tasks.cancelAll() }
    return try await body(client)
  }
}

/// Polls `condition` until it holds or the deadline passes; a failure names what it waited for.
///
/// Deadlines are generous for a loaded 2-core machine: at least 60 s whatever `timeout` says,
/// times `HERALD_TEST_TIME_SCALE` when it is set (a passing condition returns at once, so a
/// long deadline costs nothing unless something is wrong).
package func eventually(
  timeout: Duration = .seconds(60), _ what: String, _ condition: () async throws -> Bool
) async throws {
  let timeout = max(timeout, .seconds(60)) * testTimeScale
  let deadline = ContinuousClock.now.advanced(by: timeout)
  while ContinuousClock.now < deadline {
    if try await condition() { return }
    try await Task.sleep(for: .milliseconds(100))
  }
  throw TestSetupError("timed out after \(timeout) waiting for \(what)")
}

/// `HERALD_TEST_TIME_SCALE` (default 1): stretches every deadline the tests wait with.
package let testTimeScale: Double = {
  guard let text = ProcessInfo.processInfo.environment["HERALD_TEST_TIME_SCALE"], let scale = Double(text), scale >= 1 else { return 1 }
  return scale
}()

/// Writes `count` subscribers `user<n>@example.com` (first name `User<n>`, attributes `{"n": n}`)
/// into `list` in one statement; every tenth has no e-mail consent.
package func seedSubscribers(_ count: Int, list: UUID, database: PostgresClient) async throws {
  try await database.query(
    """
    WITH created AS (
      INSERT INTO campaign.subscribers (email, first_name, attributes, email_subscribed, email_consent_source, email_consented_at)
      SELECT 'user' || g || '@example.com', 'User' || g, jsonb_build_object('n', g), g % 10 <> 0,
        CASE WHEN g % 10 <> 0 THEN 'test-seed' END, CASE WHEN g % 10 <> 0 THEN now() END
      FROM generate_series(1, \(count)) AS g
      RETURNING id
    )
    INSERT INTO campaign.list_members (list_id, subscriber_id) SELECT \(list), id FROM created
    """, logger: Logger(label: "test.seed"))
}
