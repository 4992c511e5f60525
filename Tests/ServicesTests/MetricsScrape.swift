import AsyncHTTPClient
import NIOCore

/// A process's `/metrics` at `port`: each series whose name starts with `prefix` (name and labels,
/// as Prometheus' text format writes them) and its value.
func scrapeMetrics(port: Int, prefix: String = "") async throws -> [String: Double] {
  let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(10))
  let text = String(buffer: try await response.body.collect(upTo: 4 << 20))
  var figures: [String: Double] = [:]
  for line in text.split(separator: "\n") where !line.hasPrefix("#") && line.hasPrefix(prefix) {
    guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
    figures[String(line[..<space])] = value
  }
  return figures
}
