import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// PostgreSQL for tests. With `HERALD_TEST_DATABASE_URL` (a URL whose user may create databases)
/// it uses that server; otherwise it starts one throwaway cluster for the whole test process with
/// the system's `initdb`/`pg_ctl` (as the `postgres` user when running as root), listening only on
/// a Unix socket in a temporary folder, and stops and deletes it when the process exits.
///
/// Every suite asks for its own database (`makeDatabase()`), so suites never see each other's data.
package actor TestPostgres {
  package static let shared = TestPostgres()

  private struct Server {
    var adminURL: String
  }

  private var server: Server?

  /// A new, empty database; returns its URL.
  package func makeDatabase(prefix: String = "t") async throws -> String {
    let server = try await startIfNeeded()
    let name = "\(prefix)_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased())"
    let admin = try DatabaseConfiguration(url: server.adminURL, poolSize: 1)
    let client = PostgresClient(configuration: admin.client, backgroundLogger: Logger(label: "test.postgres"))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { await client.run() }
      try await client.query("CREATE DATABASE \(unescaped: name)")
      group.cancelAll()
    }
    return Self.url(server.adminURL, database: name)
  }

  static func url(_ url: String, database: String) -> String {
    var components = URLComponents(string: url)!
    components.path = "/\(database)"
    return components.string!
  }

  private func startIfNeeded() async throws -> Server {
    if let server { return server }
    let started: Server
    if let url = ProcessInfo.processInfo.environment["HERALD_TEST_DATABASE_URL"], !url.isEmpty {
      started = Server(adminURL: url)
    } else {
      started = try Self.startCluster()
    }
    server = started
    return started
  }

  // MARK: - The throwaway cluster

  nonisolated(unsafe) private static var clusterFolder: String?

  private static func startCluster() throws -> Server {
    let tools = try PostgresTools.locate()
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("herald-test-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    let data = folder + "/data"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let asPostgres = getuid() == 0
    if asPostgres {
      try PostgresTools.run("/bin/chown", ["postgres:postgres", folder])
    }
    try tools.run("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"], asPostgres: asPostgres)
    let options = [
      "-k", folder, "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
      "-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=128MB",
    ].joined(separator: " ")
    try tools.run(
      "pg_ctl", ["-D", data, "-o", options, "-l", folder + "/server.log", "-w", "-t", "60", "start"], asPostgres: asPostgres)
    clusterFolder = folder
    atexit {
      guard let folder = TestPostgres.clusterFolder, let tools = try? PostgresTools.locate() else { return }
      _ = try? tools.run("pg_ctl", ["-D", folder + "/data", "-m", "immediate", "-w", "stop"], asPostgres: getuid() == 0)
      try? FileManager.default.removeItem(atPath: folder)
    }
    return Server(adminURL: "postgres://postgres@localhost/postgres?host=\(folder)")
  }
}

/// The system's PostgreSQL server programs: on PATH, or in Debian's /usr/lib/postgresql/<v>/bin.
package struct PostgresTools: Sendable {
  package var binFolder: String

  package static func locate() throws -> PostgresTools {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    var candidates = path.split(separator: ":").map(String.init)
    let debian = "/usr/lib/postgresql"
    if let versions = try? FileManager.default.contentsOfDirectory(atPath: debian) {
      candidates += versions.sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }.map { "\(debian)/\($0)/bin" }
    }
    for folder in candidates
    where FileManager.default.isExecutableFile(atPath: folder + "/pg_ctl")
      && FileManager.default.isExecutableFile(atPath: folder + "/initdb")
    {
      return PostgresTools(binFolder: folder)
    }
    throw TestSetupError(
      "PostgreSQL server programs (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: "
        + "install them (apt-get install postgresql) or set HERALD_TEST_DATABASE_URL")
  }

  @discardableResult
  package func run(_ tool: String, _ arguments: [String], asPostgres: Bool) throws -> String {
    if asPostgres {
      return try Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", binFolder + "/" + tool] + arguments)
    }
    return try Self.run(binFolder + "/" + tool, arguments)
  }

  /// Runs a program to completion with posix_spawn/waitpid (Foundation's Process can hang in
  /// waitUntilExit under Swift concurrency), its output going to a temporary file.
  @discardableResult
  package static func run(_ executable: String, _ arguments: [String]) throws -> String {
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("herald-run-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    let status = try SpawnedProcess(executable, arguments, output: outputPath).wait()
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    let exitedCleanly = (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0
    guard exitedCleanly else {
      throw TestSetupError("\(executable) \(arguments.joined(separator: " ")) failed (status \(status)):\n\(output)")
    }
    return output
  }
}

package struct TestSetupError: Error, CustomStringConvertible {
  package var description: String
  package init(_ description: String) { self.description = description }
}
