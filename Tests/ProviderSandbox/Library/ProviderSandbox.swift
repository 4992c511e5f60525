import AsyncHTTPClient
import CRMSandbox
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdHTTP2
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import _CryptoExtras

/// A local stand-in for the push and WhatsApp services, speaking their APIs' shapes over
/// HTTP/2 with TLS (what APNs requires; FCM and the Cloud API take it too):
/// - APNs: `POST /3/device/{token}`, token authentication (the ES256 JWT checked with the key's
///   public half, its team and key id, its age), `apns-topic`, `apns-push-type`,
///   `apns-priority`; 410 Unregistered for a token the app no longer has, 400 BadDeviceToken.
/// - FCM HTTP v1: `POST /token` (the RS256 JWT grant of a service account, checked with its
///   public key) gives an access token; `POST /v1/projects/{project}/messages:send` takes it;
///   404 UNREGISTERED for a token the app no longer has.
/// - WhatsApp Cloud API: `POST /{version}/{phone-number-id}/messages` with the bearer token;
///   template messages are checked against the templates it knows (name, language, parameter
///   count: error 132001, 132000), text only within 24 hours of the number's last message in.
///   Each accepted message's statuses (sent, delivered, read) and the messages people "send"
///   (`POST /sandbox/whatsapp/inbound`) are posted to `whatsapp.webhookURL`, signed with
///   X-Hub-Signature-256 like Meta's.
/// What it accepted is listed at `GET /sandbox/received`; `POST /sandbox/unregister` makes a
/// token one the app no longer has (an uninstall).
package final class ProviderSandbox: Sendable {
  package struct APNs: Sendable {
    package var teamID: String
    package var keyID: String
    package var publicKeyPEM: String
    package var topic: String
    package init(teamID: String, keyID: String, publicKeyPEM: String, topic: String) {
      self.teamID = teamID
      self.keyID = keyID
      self.publicKeyPEM = publicKeyPEM
      self.topic = topic
    }
  }

  package struct FCM: Sendable {
    package var projectID: String
    package var clientEmail: String
    package var publicKeyPEM: String
    package init(projectID: String, clientEmail: String, publicKeyPEM: String) {
      self.projectID = projectID
      self.clientEmail = clientEmail
      self.publicKeyPEM = publicKeyPEM
    }
  }

  package struct WhatsApp: Sendable {
    package var phoneNumberID: String
    package var accessToken: String
    package var appSecret: String
    /// Where statuses and inbound messages are posted (Herald's webhook route); nil: nowhere.
    package var webhookURL: String?
    /// Templates by name: their language and how many body parameters they take.
    package var templates: [String: (language: String, parameters: Int)]
    /// Whether each delivered message is also read (a read receipt).
    package var readReceipts: Bool
    package init(
      phoneNumberID: String, accessToken: String, appSecret: String, webhookURL: String? = nil,
      templates: [String: (language: String, parameters: Int)] = [:], readReceipts: Bool = true
    ) {
      self.phoneNumberID = phoneNumberID
      self.accessToken = accessToken
      self.appSecret = appSecret
      self.webhookURL = webhookURL
      self.templates = templates
      self.readReceipts = readReceipts
    }
  }

  /// One request it accepted.
  package struct Received: Sendable {
    /// apns, fcm or whatsapp.
    package var service: String
    /// The device token or the WhatsApp number (digits).
    package var recipient: String
    package var headers: [String: String]
    package var body: Data
    /// The WhatsApp message id, the APNs apns-id or the FCM message name it answered.
    package var id: String

    package var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
  }

  let apns: APNs?
  let fcm: FCM?
  let whatsapp: WhatsApp?
  private let state = Mutex(State())

  struct State {
    var received: [Received] = []
    var unregistered: Set<String> = []
    var accessTokens: [String: Date] = [:]
    /// WhatsApp numbers' last message in.
    var lastInbound: [String: Date] = [:]
    /// Refused requests: why, for a test to read.
    var refusals: [String] = []
    var tokenGrants = 0
  }

  package init(apns: APNs? = nil, fcm: FCM? = nil, whatsapp: WhatsApp? = nil) {
    self.apns = apns
    self.fcm = fcm
    self.whatsapp = whatsapp
  }

  package var received: [Received] { state.withLock { $0.received } }
  package var refusals: [String] { state.withLock { $0.refusals } }
  /// How many access tokens the FCM token endpoint gave out.
  package var tokenGrants: Int { state.withLock { $0.tokenGrants } }

  /// A token the app no longer has (uninstalled): APNs answers 410, FCM 404 UNREGISTERED.
  package func unregister(_ token: String) { _ = state.withLock { $0.unregistered.insert(token) } }

  func refuse(_ status: HTTPResponse.Status, _ why: String, _ body: [String: Any]) -> Response {
    state.withLock { $0.refusals.append("\(status.code) \(why)") }
    return Self.json(body, status: status)
  }

  static func json(_ object: Any, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
    var headers = extra
    headers[.contentType] = "application/json"
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }

  static func headers(_ request: Request) -> [String: String] {
    var headers: [String: String] = [:]
    for field in request.headers { headers[field.name.canonicalName] = field.value }
    return headers
  }

  package func router() -> Router<BasicRequestContext> {
    let router = Router()
    router.post("/3/device/:token") { request, context in
      try await self.apnsSend(request, token: context.parameters.get("token") ?? "")
    }
    router.post("/token") { request, _ in try await self.fcmToken(request) }
    router.post("/v1/projects/:project/messages:send") { request, context in
      try await self.fcmSend(request, project: context.parameters.get("project") ?? "")
    }
    router.post("/:version/:phone/messages") { request, context in
      try await self.whatsAppSend(request, phone: context.parameters.get("phone") ?? "")
    }
    router.post("/sandbox/whatsapp/inbound") { request, _ in try await self.whatsAppInbound(request) }
    router.post("/sandbox/unregister") { request, _ -> Response in
      let body = try await request.body.collect(upTo: 1 << 16)
      let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
      guard let token = object?["token"] as? String, !token.isEmpty else {
        return Self.json(["error": "send {\"token\": \"...\"}"], status: .badRequest)
      }
      self.unregister(token)
      return Self.json(["unregistered": token])
    }
    router.get("/sandbox/received") { _, _ -> Response in
      let list = self.received.map { item -> [String: Any] in
        ["service": item.service, "recipient": item.recipient, "id": item.id, "body": item.json]
      }
      return Self.json(["received": list, "refusals": self.refusals])
    }
    return router
  }

  // MARK: APNs

  func apnsSend(_ request: Request, token: String) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 16)
    guard let apns else { return refuse(.notFound, "APNs is not configured", ["reason": "NotFound"]) }
    let headers = Self.headers(request)
    guard let authorization = headers["authorization"], authorization.lowercased().hasPrefix("bearer ") else {
      return refuse(.forbidden, "no provider token", ["reason": "MissingProviderToken"])
    }
    let jwt = String(authorization.dropFirst("bearer ".count))
    switch Self.verifyES256(jwt, publicKeyPEM: apns.publicKeyPEM) {
    case .failure(let why): return refuse(.forbidden, "APNs JWT: \(why)", ["reason": "InvalidProviderToken"])
    case .success(let (header, claims)):
      guard header["kid"] as? String == apns.keyID, claims["iss"] as? String == apns.teamID else {
        return refuse(.forbidden, "APNs JWT names another key or team", ["reason": "InvalidProviderToken"])
      }
      guard let issued = claims["iat"] as? Int, Double(issued) <= Date().timeIntervalSince1970 + 60 else {
        return refuse(.forbidden, "APNs JWT has no iat or one in the future", ["reason": "InvalidProviderToken"])
      }
      guard Double(issued) > Date().timeIntervalSince1970 - 3600 else {
        return refuse(.forbidden, "APNs JWT is older than an hour", ["reason": "ExpiredProviderToken"])
      }
    }
    guard let topic = headers["apns-topic"] else { return refuse(.badRequest, "no apns-topic", ["reason": "MissingTopic"]) }
    guard topic == apns.topic else { return refuse(.badRequest, "topic \(topic)", ["reason": "TopicDisallowed"]) }
    guard ["alert", "background"].contains(headers["apns-push-type"] ?? "") else {
      return refuse(.badRequest, "apns-push-type", ["reason": "InvalidPushType"])
    }
    guard ["5", "10", nil].contains(headers["apns-priority"]) else {
      return refuse(.badRequest, "apns-priority", ["reason": "BadPriority"])
    }
    guard headers["apns-expiration"].map({ Int($0) != nil }) ?? true else {
      return refuse(.badRequest, "apns-expiration", ["reason": "BadExpirationDate"])
    }
    guard token.wholeMatch(of: /[0-9a-fA-F]{64}|[A-Za-z0-9_:-]{16,}/) != nil, !token.hasPrefix("bad") else {
      return refuse(.badRequest, "token \(token)", ["reason": "BadDeviceToken"])
    }
    let payload = Data(body.readableBytesView)
    guard let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any], object["aps"] is [String: Any] else {
      return refuse(.badRequest, "payload without aps", ["reason": "PayloadEmpty"])
    }
    guard payload.count <= 4096 else { return refuse(.init(code: 413), "payload", ["reason": "PayloadTooLarge"]) }
    if state.withLock({ $0.unregistered.contains(token) }) {
      return refuse(
        .init(code: 410), "unregistered \(token)", ["reason": "Unregistered", "timestamp": Int(Date().timeIntervalSince1970 * 1000)])
    }
    let id = headers["apns-id"] ?? UUID().uuidString.lowercased()
    state.withLock { $0.received.append(Received(service: "apns", recipient: token, headers: headers, body: payload, id: id)) }
    var answer = HTTPFields()
    answer[HTTPField.Name("apns-id")!] = id
    return Response(status: .ok, headers: answer)
  }

  // MARK: FCM

  func fcmToken(_ request: Request) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 16)
    guard let fcm else { return refuse(.notFound, "FCM is not configured", ["error": "not_found"]) }
    var form = URLComponents()
    form.percentEncodedQuery = String(buffer: body)
    let fields = Dictionary((form.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { first, _ in first })
    guard fields["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer", let assertion = fields["assertion"] else {
      return refuse(.badRequest, "grant_type", ["error": "unsupported_grant_type"])
    }
    switch Self.verifyRS256(assertion, publicKeyPEM: fcm.publicKeyPEM) {
    case .failure(let why): return refuse(.badRequest, "FCM grant: \(why)", ["error": "invalid_grant", "error_description": why])
    case .success(let (_, claims)):
      let now = Int(Date().timeIntervalSince1970)
      guard claims["iss"] as? String == fcm.clientEmail,
        (claims["scope"] as? String ?? "").split(separator: " ").contains("https://www.googleapis.com/auth/firebase.messaging"),
        let audience = claims["aud"] as? String, audience.hasSuffix("/token"),
        let expires = claims["exp"] as? Int, expires > now, expires <= now + 3660,
        let issued = claims["iat"] as? Int, issued <= now + 60
      else {
        return refuse(.badRequest, "FCM grant claims \(claims)", ["error": "invalid_grant", "error_description": "bad claims"])
      }
    }
    let token = "ya29.sandbox-" + UUID().uuidString
    state.withLock {
      $0.accessTokens[token] = Date().addingTimeInterval(3600)
      $0.tokenGrants += 1
    }
    return Self.json(["access_token": token, "expires_in": 3599, "token_type": "Bearer"])
  }

  func fcmSend(_ request: Request, project: String) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 16)
    guard let fcm else { return refuse(.notFound, "FCM is not configured", [:]) }
    func error(_ status: HTTPResponse.Status, _ state: String, _ message: String, code: String? = nil) -> Response {
      var error: [String: Any] = ["code": Int(status.code), "message": message, "status": state]
      if let code { error["details"] = [["@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code]] }
      return refuse(status, "\(state) \(message)", ["error": error])
    }
    let headers = Self.headers(request)
    let bearer = headers["authorization"].map { String($0.dropFirst("Bearer ".count)) } ?? ""
    guard let expires = state.withLock({ $0.accessTokens[bearer] }), expires > Date() else {
      return error(.unauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    }
    guard project == fcm.projectID else { return error(.forbidden, "PERMISSION_DENIED", "SenderId mismatch") }
    let payload = Data(body.readableBytesView)
    guard let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any],
      let message = object["message"] as? [String: Any], let token = message["token"] as? String
    else { return error(.badRequest, "INVALID_ARGUMENT", "The message has no token", code: "INVALID_ARGUMENT") }
    if let data = message["data"] as? [String: Any], data.values.contains(where: { !($0 is String) }) {
      return error(.badRequest, "INVALID_ARGUMENT", "data must map strings to strings", code: "INVALID_ARGUMENT")
    }
    if state.withLock({ $0.unregistered.contains(token) }) {
      return error(.notFound, "NOT_FOUND", "Requested entity was not found.", code: "UNREGISTERED")
    }
    let name = "projects/\(project)/messages/\(UUID().uuidString.lowercased())"
    state.withLock { $0.received.append(Received(service: "fcm", recipient: token, headers: headers, body: payload, id: name)) }
    return Self.json(["name": name])
  }

  // MARK: WhatsApp

  func whatsAppSend(_ request: Request, phone: String) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 16)
    guard let whatsapp else { return refuse(.notFound, "WhatsApp is not configured", [:]) }
    func error(_ status: HTTPResponse.Status, _ code: Int, _ message: String) -> Response {
      refuse(status, "\(code) \(message)", ["error": ["message": message, "type": "OAuthException", "code": code]])
    }
    let headers = Self.headers(request)
    guard headers["authorization"] == "Bearer \(whatsapp.accessToken)" else {
      return error(.unauthorized, 190, "Invalid OAuth access token.")
    }
    guard phone == whatsapp.phoneNumberID else { return error(.badRequest, 100, "Unsupported post request: unknown phone number id") }
    let payload = Data(body.readableBytesView)
    guard let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any],
      object["messaging_product"] as? String == "whatsapp", let to = object["to"] as? String,
      to.wholeMatch(of: /[1-9][0-9]{6,14}/) != nil
    else { return error(.badRequest, 100, "Invalid parameter: messaging_product and to are required") }
    switch object["type"] as? String {
    case "template":
      guard let template = object["template"] as? [String: Any], let name = template["name"] as? String,
        let language = (template["language"] as? [String: Any])?["code"] as? String
      else { return error(.badRequest, 100, "Invalid parameter: template") }
      guard let known = whatsapp.templates[name], known.language == language else {
        return error(.notFound, 132001, "Template name does not exist in the translation")
      }
      let parameters = ((template["components"] as? [[String: Any]]) ?? []).filter { $0["type"] as? String == "body" }
        .flatMap { ($0["parameters"] as? [[String: Any]]) ?? [] }
      guard parameters.count == known.parameters else {
        return error(.badRequest, 132000, "Number of parameters does not match the expected number of params")
      }
    case "text":
      guard let text = (object["text"] as? [String: Any])?["body"] as? String, !text.isEmpty else {
        return error(.badRequest, 100, "Invalid parameter: text.body")
      }
      let last = state.withLock { $0.lastInbound[to] }
      guard let last, last > Date().addingTimeInterval(-24 * 3600) else {
        return error(.badRequest, 131047, "Re-engagement message: more than 24 hours have passed since the recipient last replied")
      }
    default:
      return error(.badRequest, 100, "Invalid parameter: type")
    }
    let id = "wamid.sandbox-" + UUID().uuidString.lowercased()
    state.withLock { $0.received.append(Received(service: "whatsapp", recipient: to, headers: headers, body: payload, id: id)) }
    if whatsapp.webhookURL != nil {
      let statuses = ["sent", "delivered"] + (whatsapp.readReceipts ? ["read"] : [])
      Task {
        for status in statuses {
          // As Meta does, a webhook the receiver did not take (5xx, or no answer) is sent again.
          for _ in 0..<120 {
            let code =
              (try? await self.postWebhook([
                "statuses": [["id": id, "status": status, "timestamp": String(Int(Date().timeIntervalSince1970)), "recipient_id": to]]
              ])) ?? 0
            if (200..<500).contains(code) { break }
            try? await Task.sleep(for: .milliseconds(250))
          }
        }
      }
    }
    return Self.json([
      "messaging_product": "whatsapp", "contacts": [["input": to, "wa_id": to]], "messages": [["id": id]],
    ])
  }

  /// `{"from": "+4915...", "text": "..."}`: a person writes to the number; posted to the webhook.
  func whatsAppInbound(_ request: Request) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 16)
    guard whatsapp?.webhookURL != nil else {
      return Self.json(["error": "WhatsApp has no webhook URL configured"], status: .badRequest)
    }
    let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
    guard let from = (object?["from"] as? String).map({ $0.hasPrefix("+") ? String($0.dropFirst()) : $0 }),
      from.wholeMatch(of: /[1-9][0-9]{6,14}/) != nil, let text = object?["text"] as? String
    else { return Self.json(["error": "send {\"from\": \"+4915112345678\", \"text\": \"...\"}"], status: .badRequest) }
    let id = "wamid.sandbox-in-" + UUID().uuidString.lowercased()
    state.withLock { $0.lastInbound[from] = Date() }
    let status = try await postWebhook(
      [
        "contacts": [["profile": ["name": "Sandbox"], "wa_id": from]],
        "messages": [
          ["from": from, "id": id, "timestamp": String(Int(Date().timeIntervalSince1970)), "type": "text", "text": ["body": text]]
        ],
      ])
    return Self.json(["id": id, "webhook_status": status])
  }

  /// Posts one change to the webhook URL, signed as Meta signs; the status it got.
  @discardableResult
  func postWebhook(_ value: [String: Any]) async throws -> Int {
    guard let whatsapp, let url = whatsapp.webhookURL else { return 0 }
    var value = value
    value["messaging_product"] = "whatsapp"
    value["metadata"] = ["display_phone_number": "15550100000", "phone_number_id": whatsapp.phoneNumberID]
    let object: [String: Any] = [
      "object": "whatsapp_business_account",
      "entry": [["id": "sandbox-waba", "changes": [["field": "messages", "value": value]]]],
    ]
    let body = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    let signature = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(whatsapp.appSecret.utf8)))
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    request.headers.add(name: "X-Hub-Signature-256", value: "sha256=" + signature.map { String(format: "%02x", $0) }.joined())
    request.body = .bytes(ByteBuffer(bytes: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    _ = try? await response.body.collect(upTo: 1 << 20)
    return Int(response.status.code)
  }

  // MARK: JWT

  static func base64URLDecode(_ text: Substring) -> Data? {
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while base64.count % 4 != 0 { base64 += "=" }
    return Data(base64Encoded: base64)
  }

  /// The header and claims of a compact JWT whose signature `verify` accepts over "header.claims".
  static func verify(
    _ jwt: String, algorithm: String, _ check: (Data, Data) -> Bool
  ) -> Result<([String: Any], [String: Any]), JWTProblem> {
    let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3, let headerData = base64URLDecode(parts[0]), let claimsData = base64URLDecode(parts[1]),
      let signature = base64URLDecode(parts[2]),
      let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any],
      let claims = (try? JSONSerialization.jsonObject(with: claimsData)) as? [String: Any]
    else { return .failure(JWTProblem("not a compact JWT")) }
    guard header["alg"] as? String == algorithm else { return .failure(JWTProblem("alg is not \(algorithm)")) }
    guard check(Data("\(parts[0]).\(parts[1])".utf8), signature) else { return .failure(JWTProblem("the signature does not verify")) }
    return .success((header, claims))
  }

  static func verifyES256(_ jwt: String, publicKeyPEM: String) -> Result<([String: Any], [String: Any]), JWTProblem> {
    guard let key = try? P256.Signing.PublicKey(pemRepresentation: publicKeyPEM) else {
      return .failure(JWTProblem("the sandbox's APNs public key does not load"))
    }
    return verify(jwt, algorithm: "ES256") { input, signature in
      guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
      return key.isValidSignature(signature, for: input)
    }
  }

  static func verifyRS256(_ jwt: String, publicKeyPEM: String) -> Result<([String: Any], [String: Any]), JWTProblem> {
    guard let key = try? _RSA.Signing.PublicKey(pemRepresentation: publicKeyPEM) else {
      return .failure(JWTProblem("the sandbox's service-account public key does not load"))
    }
    return verify(jwt, algorithm: "RS256") { input, signature in
      key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .insecurePKCS1v1_5)
    }
  }

  package struct JWTProblem: Error, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
  }
}

/// Serves `sandbox` over HTTP/2 with TLS (ALPN h2, HTTP/1.1 too) with the certificate and key
/// in PEM, on `host:port` (0: any free port), for the duration of `body`.
package func withProviderSandbox<T: Sendable>(
  _ sandbox: ProviderSandbox, certificatePEM: String, keyPEM: String, host: String = "127.0.0.1", port: Int = 0,
  _ body: (_ port: Int) async throws -> T
) async throws -> T {
  let certificates = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
  let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
  let tls = TLSConfiguration.makeServerConfiguration(certificateChain: certificates, privateKey: .privateKey(key))
  return try await withListeningServer(
    sandbox.router(), host: host, port: port, label: "provider-sandbox", server: try .http2Upgrade(tlsConfiguration: tls), body)
}

/// Calls the sandbox's own routes (a person writing on WhatsApp, an uninstall) over HTTPS,
/// trusting its certificate.
package enum ProviderSandboxClient {
  package static func post(url: String, certificate: String, _ object: [String: Any]) async throws -> [String: Any] {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)))]
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.tlsConfiguration = tls
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object)))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 1 << 20)
    return ((try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]) ?? [:]
  }
}
