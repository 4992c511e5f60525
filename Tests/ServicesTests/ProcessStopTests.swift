import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import Testing

/// Every Herald process exits cleanly on SIGINT whatever state it is in: here after it was paused
/// (SIGSTOP) while clients kept connecting, so that connections pile up unserved, then resumed
/// (SIGCONT) and stopped at once. For `ratelimit` its heartbeat also fails every second on a
/// dropped column, as in the crash this test was written for ("Deinited NIOAsyncWriter without
/// calling finish()", a trap when a server's serving task is cancelled while accepted connections
/// wait).
@Suite(.serialized, .timeLimit(.minutes(10))) struct ProcessStopTests {
  static let executables = ["campaign", "delivery", "ratelimit", "sync", "verification", "gateway"]

  @Test(arguments: executables) func exitsCleanlyOnSIGINTAfterAPauseUnderLoad(executable name: String) async throws {
    let executable = try builtExecutable(name)
    let url = try await TestPostgres.shared.makeDatabase()
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-stop-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let log = folder + "/\(name).log"

    var environment = ProcessInfo.processInfo.environment
    environment["HERALD_DATABASE_URL"] = url
    let port = try freePort()
    environment["HERALD_PORT"] = String(port)
    environment["HERALD_LOG_LEVEL"] = "info"
    environment["HERALD_RATELIMIT_HEARTBEAT"] = "1s"
    // Its dependencies are down: the process stays NOT_SERVING but answers health.
    for dependency in ServiceCatalog.calls[name] ?? [] {
      environment[ServiceCatalog.addressVariable(dependency)] = "127.0.0.1:1"
    }
    environment["HERALD_ADMIN_API_KEY"] = "hrld_stop-test-admin-key-0123456789"

    for round in 1...2 {
      let process = try SpawnedProcess(executable, [], output: log, environment: environment)
      var exited = false
      defer { if !exited { process.kill() } }
      try await eventually(timeout: .seconds(120), "\(name) to answer on port \(port) (round \(round))") {
        await Self.answers(name, port: port)
      }
      if name == "ratelimit" && round == 2 {
        try await withDatabase(url) { database in
          try await database.query("ALTER TABLE ratelimit.members DROP COLUMN IF EXISTS heartbeat_at", logger: Logger(label: "test"))
        }
      }
      // Clients keep connecting while the process is paused and after it resumes.
      let hammering = Task {
        while !Task.isCancelled {
          await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { _ = await Self.answers(name, port: port, timeout: .milliseconds(300)) } }
          }
        }
      }
      try await Task.sleep(for: .milliseconds(300))
      kill(process.pid, SIGSTOP)
      try await Task.sleep(for: .seconds(3))
      kill(process.pid, SIGCONT)
      try await Task.sleep(for: .milliseconds(round == 1 ? 50 : 700))
      kill(process.pid, SIGINT)
      let status = try await answerWithin(.seconds(60)) { try await process.exitCode() }
      exited = true
      hammering.cancel()
      _ = await hammering.value
      let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
      #expect(status == 0, "\(name) exited with \(status) in round \(round); its log:\n\(output.suffix(3000))")
      #expect(!output.contains("Fatal error"), "\(name) trapped in round \(round):\n\(output.suffix(3000))")
    }
  }

  enum DatabaseTrouble: String, Sendable {
    /// Unreachable from the start: the process waits to migrate.
    case neverThere
    /// Gone after start: connections closed, new ones refused.
    case refusing
    /// Connections stay open but nothing comes back.
    case frozen
  }

  /// Every process waiting for its database at start-up; and those that serve on their own (the
  /// others wait for a dependency, which is down here) once their database goes away after.
  static let databaseTroubles: [(String, DatabaseTrouble)] =
    executables.map { ($0, .neverThere) } + ["ratelimit", "verification", "gateway"].flatMap { [($0, .refusing), ($0, .frozen)] }

  /// SIGINT ends the process within a minute, exit status 0, whatever its database does.
  @Test(arguments: databaseTroubles)
  func exitsOnSIGINTWhileItsDatabaseIsAway(executable name: String, trouble: DatabaseTrouble) async throws {
    let executable = try builtExecutable(name)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-away-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let log = folder + "/\(name).log"
    // A database (behind a proxy that plays it going away) only for the troubles that need one.
    func withTroubledDatabase(_ body: (DatabaseProxy?) async throws -> Void) async throws {
      guard trouble != .neverThere else { return try await body(nil) }
      try await withDatabaseProxy(try await TestPostgres.shared.makeDatabase(), body)
    }
    try await withTroubledDatabase { proxy in
      var environment = ProcessInfo.processInfo.environment
      environment["HERALD_DATABASE_URL"] = proxy?.url ?? "postgres://nobody@localhost/herald?host=\(folder)/no-such-socket"
      let port = try freePort()
      environment["HERALD_PORT"] = String(port)
      environment["HERALD_LOG_LEVEL"] = "info"
      environment["HERALD_DATABASE_WAIT"] = "10m"
      environment["HERALD_RATELIMIT_HEARTBEAT"] = "1s"
      for dependency in ServiceCatalog.calls[name] ?? [] {
        environment[ServiceCatalog.addressVariable(dependency)] = "127.0.0.1:1"
      }
      let process = try SpawnedProcess(executable, [], output: log, environment: environment)
      var exited = false
      defer { if !exited { process.kill() } }
      if let proxy {
        // Started (migrated, SERVING): the trouble comes after start-up, not during it.
        try await eventually(timeout: .seconds(120), "\(name) to serve on port \(port)") {
          await Self.answers(name, port: port, serving: true)
        }
        if trouble == .refusing { proxy.refuse() } else { proxy.freeze() }
        // The process goes on using its database (its pool, the watch, the heartbeat, a
        // verification asked for now) and finds it gone, or waits on it.
        let asking = Task {
          guard name == "verification" else { return }
          _ = try? await withClient(port: port) { client in
            try await Herald_Verification_V1_VerificationService.Client(wrapping: client).runVerification(.init())
          }
        }
        defer { asking.cancel() }
        do {
          try await eventually(timeout: .seconds(120), "\(name) to use its database while it is away (\(trouble))") {
            guard name != "gateway" else { return true }
            if trouble == .frozen { return proxy.heldAQuery }
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return output.contains("database does not answer") || output.contains("failed")
          }
        } catch {
          let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
          throw TestSetupError("\(error); \(name)'s log:\n\(output.suffix(3000))")
        }
      } else {
        // Its first try to connect failed: it is waiting to migrate. (Herald's own "database not
        // ready; retrying" comes only once the pool gives up on that first try, after a minute.)
        try await eventually(timeout: .seconds(120), "\(name) to wait for its database") {
          let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
          return output.contains("Connection creation failed") || output.contains("database not ready; retrying")
        }
      }
      kill(process.pid, SIGINT)
      let status = try await answerWithin(.seconds(60)) { try await process.exitCode() }
      exited = true
      let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
      #expect(status == 0, "\(name) (\(trouble)) exited with \(status); its log:\n\(output.suffix(3000))")
      #expect(!output.contains("Fatal error"), "\(name) (\(trouble)) trapped:\n\(output.suffix(3000))")
    }
  }

  /// Whether the process answers: gRPC health (any status, or SERVING when `serving`) for a
  /// back-end, HTTP for the gateway.
  static func answers(_ name: String, port: Int, timeout: Duration = .seconds(2), serving: Bool = false) async -> Bool {
    if name == "gateway" {
      let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health")
      return (try? await HTTPClient.shared.execute(request, timeout: .milliseconds(timeout.components.seconds * 1000 + 300))) != nil
    }
    let result = await HealthProbe.grpc(ServiceAddress(host: "127.0.0.1", port: port), timeout: timeout)
    return result.healthy || (!serving && result.message.hasPrefix("NOT_SERVING"))
  }
}
