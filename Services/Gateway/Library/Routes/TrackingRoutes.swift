import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldCore
import HeraldProtos
import Hummingbird
import SwiftProtobuf

/// The public routes of a tracked campaign e-mail (SPEC §10), without an API key:
///
/// - `GET /t/o/{token}`: the open pixel, a 1×1 transparent GIF that is never cached;
/// - `GET /t/c/{token}`: a click, redirected (302) to the target inside the signed token.
///
/// HEAD is answered too (link scanners use it; it counts as a signal of a machine). Delivery
/// checks the token and records the open or click on the message it names, with the client's user
/// agent and address as signals; a token that is not genuine is a 404 (the image, or a page).
struct TrackingRoutes: Sendable {
  static let openPath = "/t/o/{token}"
  static let clickPath = "/t/c/{token}"
  let delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  func register(on router: some RouterMethods<GatewayRequestContext>) {
    let delivery = self.delivery
    for (path, kind) in [(Self.openPath, "open"), (Self.clickPath, "click")] {
      let routerPath = RouterPath(RESTRouter.hummingbirdPath(path))
      let parameter = RESTRouter.pathVariables(path)[0].parameter
      let handler: @Sendable (Request, GatewayRequestContext) async throws -> Response = { request, context in
        let hit = Herald_Delivery_V1_RecordTrackingHitRequest.with {
          $0.token = context.parameters.get(parameter) ?? ""
          $0.kind = kind
          $0.userAgent = request.headers[.userAgent] ?? ""
          $0.remoteAddress = context.remoteAddress?.ipAddress ?? ""
          $0.method = request.method == .head ? "HEAD" : "GET"
        }
        do {
          let answer = try await ProtoJSON.call("delivery") { try await delivery.recordTrackingHit(hit) }
          return kind == "open" ? Self.pixel(.ok) : Self.redirect(to: answer.targetURL)
        } catch let problem as Problem where problem.status == .badRequest {
          return kind == "open" ? Self.pixel(.notFound) : UnsubscribeRoutes.html(.notFound, Self.invalidPage)
        }
      }
      router.get(routerPath, use: handler)
      router.head(routerPath, use: handler)
    }
  }

  /// A 1×1 transparent GIF (43 bytes).
  static let gif: [UInt8] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
  ]

  static func pixel(_ status: HTTPResponse.Status) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "image/gif"
    headers[.cacheControl] = "no-store, no-cache, must-revalidate, max-age=0"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: gif)))
  }

  static func redirect(to target: String) -> Response {
    var headers = HTTPFields()
    headers[.location] = target
    headers[.cacheControl] = "no-store"
    headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
    return Response(status: .found, headers: headers)
  }

  static let invalidPage = UnsubscribeRoutes.document(
    "Link not valid",
    """
    <h1>This link is not valid</h1>
    <p>It may have been copied incompletely. Open it from the message again.</p>
    """)
}
