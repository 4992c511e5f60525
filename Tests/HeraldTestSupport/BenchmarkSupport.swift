import Foundation
import HeraldServerKit

/// A phase line, appended to the file HERALD_BENCHMARK_PHASES names (the benchmark tool keeps the
/// process's own output to itself); scripts/benchmark puts these lines in the results.
package func benchmarkPhase(_ text: String) {
  guard let path = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_PHASES"] else { return }
  if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
  guard let file = FileHandle(forWritingAtPath: path) else { return }
  file.seekToEndOfFile()
  file.write(Data("phase \(text)\n".utf8))
  file.closeFile()
}

/// Seconds since `start`, with two decimals.
package func seconds(since start: ContinuousClock.Instant) -> Double {
  let elapsed = ContinuousClock.now - start
  return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

package struct BenchmarkFailure: Error, CustomStringConvertible {
  package var description: String
  package init(_ description: String) { self.description = description }
}

/// CPU time used so far (user + system, seconds) by this process, by every process named
/// `postgres` (the benchmark's own throwaway cluster), and by `other` (a sink in a process of its
/// own), read from /proc: a coarse profile of where a run's CPU goes.
package func cpuSeconds(other: pid_t? = nil) -> (own: Double, postgres: Double, other: Double) {
  func ticks(_ path: String) -> (name: String, ticks: Double)? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), let close = text.lastIndex(of: ")"),
      let open = text.firstIndex(of: "(")
    else { return nil }
    let name = String(text[text.index(after: open)..<close])
    // Fields after the name: state is field 3, utime 14, stime 15.
    let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (name, user + system)
  }
  let hertz = Double(sysconf(Int32(_SC_CLK_TCK)))
  let own = (ticks("/proc/self/stat")?.ticks ?? 0) / hertz
  let otherSeconds = other.map { (ticks("/proc/\($0)/stat")?.ticks ?? 0) / hertz } ?? 0
  var postgres = 0.0
  for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where entry.allSatisfy(\.isNumber) {
    if let process = ticks("/proc/\(entry)/stat"), process.name == "postgres" { postgres += process.ticks / hertz }
  }
  return (own, postgres, otherSeconds)
}

/// An HTTP sink in a process of its own: nginx (Debian's `nginx-light`, which scripts/benchmark
/// installs) answering every request with `202 {}` on one core, and logging one line per
/// request. A provider's API runs on other machines; nginx is the cheapest real HTTP server to
/// stand in for it, so the benchmark's two cores go to Herald and PostgreSQL. `body` gets the
/// port, the sink's pid (for its CPU time) and a function counting the requests served.
package func withNginxSink<T: Sendable>(
  _ body: (_ port: Int, _ pid: pid_t, _ requests: @Sendable () -> Int) async throws -> T
) async throws -> T {
  let nginx = "/usr/sbin/nginx"
  guard FileManager.default.isExecutableFile(atPath: nginx) else {
    throw TestSetupError("\(nginx) is missing: run scripts/benchmark, which installs nginx-light")
  }
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-nginx-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: folder + "/logs", withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: folder) }
  let port = try freePort()
  // One process (no master), so that a SIGKILL ends all of it and its CPU time is one figure;
  // connections kept open for as many requests as come (the default closes them every 1,000).
  let configuration = """
    daemon off;
    master_process off;
    worker_processes 1;
    pid \(folder)/nginx.pid;
    error_log \(folder)/logs/error.log warn;
    events { worker_connections 4096; }
    http {
      log_format request '$status';
      access_log \(folder)/logs/access.log request;
      keepalive_requests 100000000;
      keepalive_timeout 120s;
      client_body_temp_path \(folder)/body;
      server {
        listen 127.0.0.1:\(port);
        location / {
          default_type application/json;
          return 202 '{}';
        }
      }
    }
    """
  try configuration.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
  let process = try SpawnedProcess(nginx, ["-p", folder, "-c", folder + "/nginx.conf"], output: folder + "/logs/output.log")
  defer { process.kill() }
  try await eventually(timeout: .seconds(20), "nginx to listen on \(port)") {
    if !process.isRunning {
      let log = (try? String(contentsOfFile: folder + "/logs/output.log", encoding: .utf8)) ?? ""
      throw TestSetupError("nginx stopped: \(log)")
    }
    return (try? String(contentsOfFile: folder + "/nginx.pid", encoding: .utf8)) != nil && canConnect(port: port)
  }
  let accessLog = folder + "/logs/access.log"
  return try await body(port, process.pid) {
    // Lines counted without reading the file into a string: about 4 bytes each.
    guard let data = FileManager.default.contents(atPath: accessLog) else { return 0 }
    return data.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
  }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
  let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard socket >= 0 else { return false }
  defer { close(socket) }
  var address = loopback(port: port)
  return withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  } == 0
}

/// A fixed HERALD_SECRETS_KEY for tests and benchmarks (campaign e-mail needs one to sign its
/// unsubscribe links).
package let testSecrets = try! SecretBox("test:" + Data(repeating: 0x11, count: 32).base64EncodedString())
