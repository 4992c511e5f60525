import AsyncHTTPClient
import Crypto
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// How an APNs provider reaches Apple: from `ApnsSettings`.
package struct APNsSettings: Sendable, Equatable {
  package var url: String
  package var teamID: String
  package var keyID: String
  package var privateKeyVariable: String
  package var topic: String
  package var trustedCAPEM: String?
  package var timeout: TimeAmount = .seconds(15)

  package static let productionURL = "https://api.push.apple.com"
}

/// A value that is made again shortly before it expires (a provider's JWT, an OAuth 2.0 access
/// token), shared by the sends of one provider: concurrent sends that find none wait for the
/// one being made.
final class RenewingToken: Sendable {
  private struct State {
    var value: String?
    var renewAfter = ContinuousClock.now
    var making: Task<(String, Duration), any Error>?
  }
  private let state = Mutex(State())

  /// The cached value while it is fresh, else what `make` gives (with how long it may be used).
  func value(_ make: @escaping @Sendable () async throws(SendFailure) -> (String, Duration)) async throws(SendFailure) -> String {
    let now = ContinuousClock.now
    let task: Task<(String, Duration), any Error>
    switch state.withLock({ state -> Either in
      if let value = state.value, state.renewAfter > now { return .cached(value) }
      if let making = state.making { return .making(making) }
      let making = Task<(String, Duration), any Error> { try await make() }
      state.making = making
      return .making(making)
    }) {
    case .cached(let value): return value
    case .making(let making): task = making
    }
    do {
      let (value, lifetime) = try await task.value
      state.withLock { state in
        if state.making == task {
          state.value = value
          state.renewAfter = now + lifetime
          state.making = nil
        }
      }
      return value
    } catch {
      state.withLock { state in if state.making == task { state.making = nil } }
      throw error as? SendFailure ?? .temporary("\(error)")
    }
  }

  private enum Either {
    case cached(String)
    case making(Task<(String, Duration), any Error>)
  }

  /// Forgets the value (the service refused it).
  func drop(_ value: String) {
    state.withLock { if $0.value == value { $0.value = nil } }
  }
}

/// Apple Push Notification service over HTTP/2 (async-http-client negotiates h2 with ALPN) with
/// token authentication: an ES256 JWT, made again every 50 minutes (APNs refuses one older than
/// an hour, and one made more often than every 20 minutes).
package struct APNsProvider: DeliveryProvider {
  let settings: APNsSettings
  let endpoint: ProviderEndpoint
  let token = RenewingToken()
  var name: String { endpoint.name }

  package init(name: String, settings: APNsSettings, client: HTTPClient, keys: [String: String]) {
    self.settings = settings
    self.endpoint = ProviderEndpoint(name: name, client: client, keys: keys, trustedCAPEM: settings.trustedCAPEM)
  }

  /// The provider JWT: header kid (key id), claims iss (team id) and iat.
  func providerToken() async throws(SendFailure) -> String {
    try await token.value { () throws(SendFailure) in
      let pem = try ProviderKey.read(settings.privateKeyVariable, holding: "PRIVATE KEY", from: endpoint.keys)
      do {
        let key = try P256.Signing.PrivateKey(pemRepresentation: pem)
        let jwt = try JWT.es256(
          header: ["kid": settings.keyID], claims: ["iss": settings.teamID, "iat": Int(Date().timeIntervalSince1970)], key: key)
        return (jwt, .seconds(50 * 60))
      } catch {
        throw .temporary("\(settings.privateKeyVariable) does not hold a P-256 private key (an APNs .p8 key): \(error)")
      }
    }
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    guard let push = message.payload?.push, push.platform == "apns" else {
      throw .permanent("\(name) sends APNs notifications only; this message is not one")
    }
    let jwt = try await providerToken()
    var request = endpoint.post("\(settings.url)/3/device/\(message.recipient)")
    request.headers.add(name: "authorization", value: "bearer \(jwt)")
    request.headers.add(name: "apns-topic", value: settings.topic)
    request.headers.add(name: "apns-push-type", value: "alert")
    request.headers.add(name: "apns-priority", value: push.priority == "normal" ? "5" : "10")
    request.headers.add(name: "apns-expiration", value: String(Int(Date().timeIntervalSince1970) + push.timeToLive))
    // The message's id, so that APNs' answers and Herald's records name the same notification.
    request.headers.add(name: "apns-id", value: message.id.uuidString.lowercased())
    if let collapse = push.collapseID { request.headers.add(name: "apns-collapse-id", value: collapse) }
    request.headers.add(name: "content-type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: try Self.payload(message, push)))

    let response = try await endpoint.execute(request, timeout: settings.timeout)
    let body = response.body
    if response.status == .ok {
      return response.headers.first(name: "apns-id") ?? message.id.uuidString.lowercased()
    }
    let reason =
      ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["reason"] as? String ?? body.prefix(200).description
    let text = "\(name) answered \(response.status.code): \(reason)"
    switch (response.status.code, reason) {
    case (410, _):
      // The token is no longer active for the topic (the app was uninstalled): retire it.
      throw .recipientRejected("device token refused: \(text)")
    case (400, "BadDeviceToken"), (400, "DeviceTokenNotForTopic"):
      // A token of the other environment (api.sandbox.push.apple.com, development builds) or of
      // another app: most often the provider's url or topic is wrong, not the token. Failed, and
      // counted against the provider, but the token is kept.
      throw .permanent("\(text) (check the provider's url: production or sandbox, and its topic)")
    case (403, "ExpiredProviderToken"), (403, "InvalidProviderToken"):
      token.drop(jwt)
      throw .temporary(text)
    default:
      throw HTTPOutcome.failure(status: response.status, headers: response.headers, body: reason, provider: name)
    }
  }

  /// `{"aps": {"alert": {"title", "body"}, "sound": "default"}, ...data, "deep_link"}`.
  static func payload(_ message: OutgoingMessage, _ push: ChannelPayload.Push) throws(SendFailure) -> Data {
    var object: [String: Any] = [:]
    for (key, value) in push.data { object[key] = value.foundationValue }
    var alert: [String: Any] = ["body": message.body]
    if !message.subject.isEmpty { alert["title"] = message.subject }
    object["aps"] = ["alert": alert, "sound": "default"] as [String: Any]
    if let link = push.deepLink { object["deep_link"] = link }
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
      throw .permanent("the notification could not be written as JSON")
    }
    // APNs takes at most 4 KB of payload for an alert.
    guard data.count <= 4096 else { throw .permanent("the notification's payload is \(data.count) bytes; APNs takes at most 4,096") }
    return data
  }

  package func shutdown() async {}
}

extension JSONValue {
  /// The value as JSONSerialization writes it.
  var foundationValue: Any {
    switch self {
    case .null: NSNull()
    case .bool(let value): value
    case .number(let value): value.rounded() == value && abs(value) < 1e15 ? Int(value) as Any : value
    case .string(let value): value
    case .array(let values): values.map(\.foundationValue)
    case .object(let values): values.mapValues(\.foundationValue)
    }
  }

  /// The value as FCM's data takes it: a string (others as their JSON text).
  var dataString: String {
    if case .string(let value) = self { return value }
    let data = try? JSONSerialization.data(withJSONObject: [foundationValue], options: [.sortedKeys, .withoutEscapingSlashes])
    let text = data.map { String(decoding: $0, as: UTF8.self) } ?? "null"
    return String(text.dropFirst().dropLast())
  }
}
