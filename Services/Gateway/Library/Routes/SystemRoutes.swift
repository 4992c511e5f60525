import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// `/health` (no key), `/system/status`, `/metrics` and `/openapi.json` (scope `read`).
struct SystemRoutes: Sendable {
  let probe: StatusProbe
  let registry: PrometheusCollectorRegistry

  func register(public router: Router<GatewayRequestContext>, guarded: RouterGroup<GatewayRequestContext>) {
    router.get("health") { _, _ in ["status": "ok"] }
    guarded.get("system/status") { _, context in
      try context.require("read")
      return await probe.check()
    }
    guarded.get("metrics") { _, context in
      try context.require("read")
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    guarded.get("openapi.json") { _, context in
      try context.require("read")
      var headers = HTTPFields()
      headers[.contentType] = "application/json"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
  }
}
