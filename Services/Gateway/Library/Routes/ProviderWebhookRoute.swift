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
      guard let signature = request.headers[Self.signature], !signature.isEmpty else {
        throw Problem.unauthorized("the webhook is not signed: send X-Herald-Signature")
      }
      var request = request
      let body = try await request.collectBody(upTo: ProtoJSON.maxBody)
      var forwarded = Herald_Delivery_V1_IngestProviderWebhookRequest()
      let provider = context.parameters.get(RESTRouter.pathVariables(Self.path)[0].parameter) ?? ""
      forwarded.provider = provider.removingPercentEncoding ?? provider
      forwarded.body = Data(body.readableBytesView)
      forwarded.signature = signature
      // The signature first: a body that is not JSON is only verified (a badly signed request is
      // 401 whatever its media type), then refused.
      var mediaType: (any Error)?
      do {
        if body.readableBytes > 0 { try ProtoJSON.requireJSON(request) }
      } catch {
        mediaType = error
      }
      forwarded.verifyOnly = mediaType != nil
      let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.ingestProviderWebhook(forwarded) }
      if let mediaType { throw mediaType }
      return try ProtoJSON.response(result)
    }
  }
}
