import AsyncHTTPClient
import HeraldCore
import HeraldServerKit
import NIOCore
import NIOHTTP1

/// `gateway probe`: the gateway serves HTTP, not gRPC, so its probe asks `GET /health`.
package enum GatewayProbe {
  package static let checks = "GET /health answers 200"

  package static func http(_ address: ServiceAddress, timeout: Duration = .seconds(3)) async -> ProbeResult {
    let started = ContinuousClock.now
    do {
      let request = HTTPClientRequest(url: "http://\(address.host):\(address.port)/health")
      let response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(timeout))
      _ = try? await response.body.collect(upTo: 64 * 1024)
      let elapsed = Int((ContinuousClock.now - started).milliseconds.rounded())
      return ProbeResult(healthy: response.status == .ok, message: "HTTP \(response.status.code) (\(elapsed) ms)")
    } catch {
      return ProbeResult(healthy: false, message: "no answer to GET /health: \(error)")
    }
  }
}
