import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1
import NIOSSL
import _CryptoExtras

/// How an FCM provider reaches Firebase: from `FcmSettings`.
package struct FCMSettings: Sendable, Equatable {
  package var projectID: String
  package var serviceAccountVariable: String
  package var url: String
  package var trustedCAPEM: String?
  package var timeout: TimeAmount = .seconds(15)

  package static let productionURL = "https://fcm.googleapis.com"
}

/// Firebase Cloud Messaging, HTTP v1: `POST {url}/v1/projects/{project}/messages:send` with an
/// OAuth 2.0 access token got from the service account's token endpoint (`token_uri` of its key)
/// with an RS256 JWT grant (RFC 7523), cached until five minutes before it expires.
package struct FCMProvider: DeliveryProvider {
  static let scope = "https://www.googleapis.com/auth/firebase.messaging"

  let settings: FCMSettings
  let endpoint: ProviderEndpoint
  let accessToken = RenewingToken()
  var name: String { endpoint.name }

  package init(name: String, settings: FCMSettings, client: HTTPClient, keys: [String: String]) {
    self.settings = settings
    self.endpoint = ProviderEndpoint(name: name, client: client, keys: keys, trustedCAPEM: settings.trustedCAPEM)
  }

  /// The parts of a service account's JSON key that the grant uses.
  struct ServiceAccount {
    var clientEmail: String
    var privateKey: _RSA.Signing.PrivateKey
    var tokenURI: String
  }

  func serviceAccount() throws(SendFailure) -> ServiceAccount {
    let variable = settings.serviceAccountVariable
    let text = try ProviderKey.read(variable, holding: "private_key", from: endpoint.keys)
    guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
      let email = object["client_email"] as? String, let pem = object["private_key"] as? String,
      let tokenURI = object["token_uri"] as? String, URL(string: tokenURI)?.host != nil
    else {
      throw .temporary("\(variable) does not hold a service account's JSON key (client_email, private_key, token_uri)")
    }
    do {
      return ServiceAccount(clientEmail: email, privateKey: try _RSA.Signing.PrivateKey(pemRepresentation: pem), tokenURI: tokenURI)
    } catch {
      throw .temporary("the private_key of the service account in \(variable) is not an RSA key: \(error)")
    }
  }

  /// An access token: the cached one, else one from the token endpoint.
  func token() async throws(SendFailure) -> String {
    try await accessToken.value { () throws(SendFailure) in
      let account = try serviceAccount()
      let now = Int(Date().timeIntervalSince1970)
      let assertion: String
      do {
        assertion = try JWT.rs256(
          header: [:],
          claims: ["iss": account.clientEmail, "scope": Self.scope, "aud": account.tokenURI, "iat": now, "exp": now + 3600],
          key: account.privateKey)
      } catch {
        throw .temporary("\(name): the token request could not be signed: \(error)")
      }
      var request = endpoint.post(account.tokenURI)
      request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
      request.body = .bytes(
        ByteBuffer(string: "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=\(assertion)"))
      guard
        let object = try await HTTPOutcome.send(request, client: endpoint.client, timeout: settings.timeout, provider: "\(name) (token)"),
        let token = object["access_token"] as? String, !token.isEmpty
      else {
        throw .temporary("\(name): the token endpoint answered no access_token")
      }
      let lifetime = (object["expires_in"] as? Int) ?? 3600
      return (token, .seconds(max(60, lifetime - 300)))
    }
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    guard let push = message.payload?.push, push.platform == "fcm" else {
      throw .permanent("\(name) sends FCM notifications only; this message is not one")
    }
    let bearer = try await token()
    var request = endpoint.post("\(settings.url)/v1/projects/\(settings.projectID)/messages:send")
    request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: try Self.payload(message, push)))

    let response = try await endpoint.execute(request, timeout: settings.timeout)
    let body = response.body
    let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    if (200..<300).contains(response.status.code) {
      return object?["name"] as? String
    }
    // {"error": {"code", "message", "status", "details": [{"@type": "...FcmError", "errorCode": "UNREGISTERED"}]}}
    let error = object?["error"] as? [String: Any]
    let details = (error?["details"] as? [[String: Any]]) ?? []
    let code = details.lazy.compactMap { $0["errorCode"] as? String }.first ?? (error?["status"] as? String) ?? ""
    let text = "\(name) answered \(response.status.code) \(code): \((error?["message"] as? String ?? body).prefix(200))"
    switch (response.status.code, code) {
    case (_, "UNREGISTERED"):
      // The app was uninstalled or the token expired: retire it.
      throw .recipientRejected("device token refused: \(text)")
    case (401, _):
      accessToken.drop(bearer)
      throw .temporary(text)
    default:
      throw HTTPOutcome.failure(status: response.status, headers: response.headers, body: text, provider: name)
    }
  }

  /// `{"message": {"token", "notification": {"title", "body"}, "data", "android", "apns"}}`.
  static func payload(_ message: OutgoingMessage, _ push: ChannelPayload.Push) throws(SendFailure) -> Data {
    var notification: [String: Any] = ["body": message.body]
    if !message.subject.isEmpty { notification["title"] = message.subject }
    var data = push.data.mapValues(\.dataString)
    if let link = push.deepLink { data["deep_link"] = link }
    var android: [String: Any] = ["priority": push.priority == "normal" ? "NORMAL" : "HIGH", "ttl": "\(push.timeToLive)s"]
    if let collapse = push.collapseID { android["collapse_key"] = collapse }
    var fields: [String: Any] = [
      "token": message.recipient, "notification": notification, "android": android,
      "apns": ["headers": ["apns-priority": push.priority == "normal" ? "5" : "10"]],
    ]
    if !data.isEmpty { fields["data"] = data }
    guard
      let body = try? JSONSerialization.data(withJSONObject: ["message": fields], options: [.sortedKeys, .withoutEscapingSlashes])
    else { throw .permanent("the notification could not be written as JSON") }
    return body
  }

  package func shutdown() async {}
}
