import Foundation

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

/// CPU time used so far (user + system, seconds) by this process and by every process named
/// `postgres` (the benchmark's own throwaway cluster), read from /proc: a coarse profile of where
/// a run's CPU goes.
package func cpuSeconds() -> (own: Double, postgres: Double) {
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
  var postgres = 0.0
  for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where entry.allSatisfy(\.isNumber) {
    if let process = ticks("/proc/\(entry)/stat"), process.name == "postgres" { postgres += process.ticks / hertz }
  }
  return (own, postgres)
}
