import Foundation

/// A proxy in front of the test PostgreSQL (a small Python program on a Unix socket of its own),
/// to play a database that goes away: `refuse()` closes every connection and refuses new ones,
/// `freeze()` keeps the connections open but passes nothing on. (Told by a file it watches, not a
/// signal: a process spawned from the test runner's threads may inherit signals blocked.)
package struct DatabaseProxy: Sendable {
  /// The database URL through the proxy.
  package let url: String
  let folder: String

  package func refuse() { _ = FileManager.default.createFile(atPath: folder + "/refuse", contents: nil) }
  package func freeze() { _ = FileManager.default.createFile(atPath: folder + "/freeze", contents: nil) }

  /// Whether, frozen, the proxy has held back bytes a client sent: the client now waits on a
  /// database that does not answer.
  package var heldAQuery: Bool {
    ((try? String(contentsOfFile: folder + "/proxy.log", encoding: .utf8)) ?? "").contains("held")
  }
}

/// Runs `body` with a proxy to the database at `url` (a `?host=<socket folder>` URL, as
/// `TestPostgres` gives out).
package func withDatabaseProxy<T: Sendable>(_ url: String, _ body: (DatabaseProxy) async throws -> T) async throws -> T {
  guard var components = URLComponents(string: url), let folder = components.queryItems?.first(where: { $0.name == "host" })?.value
  else { throw TestSetupError("the database URL \(url) names no socket folder") }
  let proxyFolder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-proxy-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: proxyFolder, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: proxyFolder) }
  let script = proxyFolder + "/proxy.py"
  try databaseProxyScript.write(toFile: script, atomically: true, encoding: .utf8)
  let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
  let port = components.port ?? 5432
  let process = try SpawnedProcess(
    python, [script, "\(folder)/.s.PGSQL.\(port)", "\(proxyFolder)/.s.PGSQL.\(port)", proxyFolder], output: proxyFolder + "/proxy.log")
  defer { process.kill() }
  try await eventually("the database proxy to listen") { FileManager.default.fileExists(atPath: "\(proxyFolder)/.s.PGSQL.\(port)") }
  components.queryItems = (components.queryItems ?? []).map { $0.name == "host" ? URLQueryItem(name: "host", value: proxyFolder) : $0 }
  guard let proxied = components.string else { throw TestSetupError("cannot write the proxied URL") }
  return try await body(DatabaseProxy(url: proxied, folder: proxyFolder))
}

private let databaseProxyScript = #"""
  import asyncio, os, sys

  upstream, listen, control = sys.argv[1], sys.argv[2], sys.argv[3]
  writers = set()
  frozen = asyncio.Event()

  async def pipe(reader, writer):
      try:
          while True:
              data = await reader.read(65536)
              if not data:
                  break
              if frozen.is_set():
                  print("held", len(data), "bytes", flush=True)
                  await asyncio.Event().wait()  # hold the bytes, answer nothing
              writer.write(data)
              await writer.drain()
      except Exception:
          pass
      finally:
          writer.close()

  async def handle(client_reader, client_writer):
      server_reader, server_writer = await asyncio.open_unix_connection(upstream)
      writers.update([client_writer, server_writer])
      await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

  async def main():
      server = await asyncio.start_unix_server(handle, listen)
      os.chmod(listen, 0o777)
      def refuse():
          server.close()
          for writer in list(writers):
              writer.transport.abort()
          try:
              os.unlink(listen)
          except OSError:
              pass
      refused = False
      while True:
          await asyncio.sleep(0.1)
          if not refused and os.path.exists(os.path.join(control, "refuse")):
              refused = True
              refuse()
          if os.path.exists(os.path.join(control, "freeze")):
              frozen.set()

  asyncio.run(main())
  """#
