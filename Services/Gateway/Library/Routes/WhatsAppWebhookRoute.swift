import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import Hummingbird
import NIOCore

/// `/v1/webhooks/whatsapp/{provider}`: a WhatsApp provider's webhook, without an API key.
/// - GET is the subscription handshake: `hub.challenge` is answered as text when `hub.mode` is
///   subscribe and `hub.verify_token` is the provider's (else 403).
/// - POST carries statuses and messages, forwarded unchanged with `X-Hub-Signature-256`, which
///   the delivery service verifies with the app secret. A request without a valid signature is
///   401 whatever the provider's name.
struct WhatsAppWebhookRoute: Sendable {
  static let signature = HTTPField.Name("X-Hub-Signature-256")!
  static let path = "/v1/webhooks/whatsapp/{provider}"
  let delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  func register(on router: some RouterMethods<GatewayRequestContext>) {
    let delivery = self.delivery
    let path = RouterPath(RESTRouter.hummingbirdPath(Self.path))
    let parameter = RESTRouter.pathVariables(Self.path)[0].parameter
    router.get(path) { request, context in
      var forwarded = Herald_Delivery_V1_VerifyWhatsAppWebhookRequest()
      let provider = context.parameters.get(parameter) ?? ""
      forwarded.provider = provider.removingPercentEncoding ?? provider
      forwarded.mode = request.uri.queryParameters["hub.mode"].map(String.init) ?? ""
      forwarded.verifyToken = request.uri.queryParameters["hub.verify_token"].map(String.init) ?? ""
      forwarded.challenge = request.uri.queryParameters["hub.challenge"].map(String.init) ?? ""
      let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.verifyWhatsAppWebhook(forwarded) }
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; charset=utf-8"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: result.challenge)))
    }
    router.post(path) { request, context in
      let signed = try await SignedWebhook(request, context: context, path: Self.path, header: Self.signature)
      var forwarded = Herald_Delivery_V1_IngestWhatsAppWebhookRequest()
      forwarded.provider = signed.provider
      forwarded.body = signed.body
      forwarded.signature = signed.signature
      forwarded.verifyOnly = signed.mediaType != nil
      let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.ingestWhatsAppWebhook(forwarded) }
      if let mediaType = signed.mediaType { throw mediaType }
      return try ProtoJSON.response(result)
    }
  }
}
