import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import Hummingbird

/// `POST /v1/inbound/sms/{provider}` and `POST /v1/inbound/email/{provider}` (SPEC §11): an SMS
/// or e-mail a provider forwards, without an API key. The body goes to the delivery service
/// unchanged, with the URL called and the signature headers, and is verified there against the
/// provider's webhook secret:
///
/// - `X-Twilio-Signature` (the form shape of the common SMS APIs, keyed with the account's auth
///   token, set as the provider's webhook secret); the answer is then an empty TwiML document,
///   since replies go out through Herald's queue;
/// - or `X-Herald-Signature`, as on the delivery webhooks; the answer is the stored message as
///   JSON.
///
/// A request without a valid signature is 401 whatever else is wrong with it, and stores nothing.
struct InboundRoutes: Sendable {
  static let twilioSignature = HTTPField.Name("X-Twilio-Signature")!
  static let forwardedProto = HTTPField.Name("X-Forwarded-Proto")!
  static let paths = [("sms", "/v1/inbound/sms/{provider}"), ("email", "/v1/inbound/email/{provider}")]
  static let mediaTypes = ["application/x-www-form-urlencoded", "application/json"]
  let delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>
  let publicURL: String?

  func register(on router: some RouterMethods<GatewayRequestContext>) {
    let (delivery, publicURL) = (self.delivery, self.publicURL)
    for (channel, path) in Self.paths {
      let parameter = RESTRouter.pathVariables(path)[0].parameter
      router.post(RouterPath(RESTRouter.hummingbirdPath(path))) { request, context in
        let twilio = request.headers[Self.twilioSignature] ?? ""
        let herald = request.headers[ProviderWebhookRoute.signature] ?? ""
        guard !twilio.isEmpty || !herald.isEmpty else {
          throw Problem.unauthorized("the message is not signed: send X-Twilio-Signature or X-Herald-Signature")
        }
        var request = request
        let body = try await request.collectBody(upTo: ProtoJSON.maxBody)
        var forwarded = Herald_Delivery_V1_IngestInboundRequest()
        let provider = context.parameters.get(parameter) ?? ""
        forwarded.provider = provider.removingPercentEncoding ?? provider
        forwarded.channel = channel
        forwarded.body = Data(body.readableBytesView)
        forwarded.contentType = request.headers[.contentType] ?? ""
        forwarded.url = Self.url(of: request, publicURL: publicURL)
        forwarded.twilioSignature = twilio
        forwarded.heraldSignature = herald
        // The signature first (as on the delivery webhooks): a body of another media type is
        // only verified, then refused.
        let type = forwarded.contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        forwarded.verifyOnly = !Self.mediaTypes.contains(type)
        let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.ingestInbound(forwarded) }
        if forwarded.verifyOnly {
          throw Problem(
            status: .unsupportedMediaType,
            detail:
              "the body is \(type.isEmpty ? "without a Content-Type" : type); send it as application/x-www-form-urlencoded or application/json",
            field: "Content-Type")
        }
        guard twilio.isEmpty else {
          var headers = HTTPFields()
          headers[.contentType] = "text/xml; charset=utf-8"
          return Response(
            status: .ok, headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: #"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#)))
        }
        return try ProtoJSON.response(result)
      }
    }
  }

  /// The URL the provider called: HERALD_PUBLIC_URL, else the request's scheme and Host, then
  /// the path and query as they came.
  static func url(of request: Request, publicURL: String?) -> String {
    let uri = request.uri.description
    if let publicURL { return publicURL + uri }
    let scheme = request.headers[Self.forwardedProto].map { $0.split(separator: ",")[0].trimmingCharacters(in: .whitespaces) } ?? "http"
    return "\(scheme)://\(request.head.authority ?? "localhost")\(uri)"
  }
}
