import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import Hummingbird

/// `POST /v1/webhooks/{provider}`: no API key; the body is forwarded unchanged with its
/// `X-Herald-Signature` header, and the delivery service verifies it against the provider's
/// webhook secret. A request without a valid signature is 401 whatever the provider's name, so
/// nobody can find out which providers exist.
struct ProviderWebhookRoute: Sendable {
  static let signature = HTTPField.Name("X-Herald-Signature")!
  static let path = "/v1/webhooks/{provider}"
  let delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  func register(on router: some RouterMethods<GatewayRequestContext>) {
    let delivery = self.delivery
    router.post(RouterPath(RESTRouter.hummingbirdPath(Self.path))) { request, context in
      let signed = try await SignedWebhook(request, context: context, path: Self.path, header: Self.signature)
      var forwarded = Herald_Delivery_V1_IngestProviderWebhookRequest()
      forwarded.provider = signed.provider
      forwarded.body = signed.body
      forwarded.signature = signed.signature
      forwarded.verifyOnly = signed.mediaType != nil
      let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.ingestProviderWebhook(forwarded) }
      if let mediaType = signed.mediaType { throw mediaType }
      return try ProtoJSON.response(result)
    }
  }
}

/// A provider's webhook as the public routes take it: its signature header (401 without one),
/// the provider's name from the path, the body as it came, and, for a body that is not JSON, the
/// error to answer once the delivery service has checked the signature (a badly signed request
/// is 401 whatever its media type; a well signed one of another type is then refused).
struct SignedWebhook {
  var provider: String
  var body: Data
  var signature: String
  var mediaType: (any Error)?

  init(_ request: Request, context: GatewayRequestContext, path: String, header: HTTPField.Name) async throws {
    guard let signature = request.headers[header], !signature.isEmpty else {
      throw Problem.unauthorized("the webhook is not signed: send \(header.rawName)")
    }
    var request = request
    let body = try await request.collectBody(upTo: ProtoJSON.maxBody)
    let provider = context.parameters.get(RESTRouter.pathVariables(path)[0].parameter) ?? ""
    self.provider = provider.removingPercentEncoding ?? provider
    self.body = Data(body.readableBytesView)
    self.signature = signature
    do {
      if body.readableBytes > 0 { try ProtoJSON.requireJSON(request) }
    } catch {
      mediaType = error
    }
  }
}
