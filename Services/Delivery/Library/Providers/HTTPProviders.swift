import AsyncHTTPClient
import Crypto
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1

/// HTTP status to send outcome, shared by the HTTP providers: 2xx sent; 408, 425, 429 and 5xx
/// temporary (429/503 with the provider's Retry-After); other 4xx permanent.
enum HTTPOutcome {
  static func failure(status: HTTPResponseStatus, headers: HTTPHeaders, body: String, provider: String) -> SendFailure {
    let text = "\(provider) answered \(status.code) \(status.reasonPhrase): \(body.prefix(300))"
    switch status.code {
    case 408, 425, 429, 500...599:
      return .temporary(text, retryAfter: retryAfter(headers))
    default:
      return .permanent(text)
    }
  }

  /// Retry-After in seconds (the HTTP-date form is rare for APIs and is ignored).
  static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
    guard let value = headers.first(name: "Retry-After"), let seconds = Int(value.trimmingCharacters(in: .whitespaces)),
      seconds >= 0
    else { return nil }
    return .seconds(min(seconds, 3600))
  }

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }()

  static func json(_ payload: some Encodable) throws(SendFailure) -> Data {
    do {
      return try encoder.encode(payload)
    } catch {
      throw .permanent("the message could not be written as JSON: \(error)")
    }
  }

  /// Sends `request`; a 2xx answer gives its JSON object (nil when the body is not one), anything
  /// else the failure it means.
  static func send(
    _ request: HTTPClientRequest, client: HTTPClient, timeout: TimeAmount, provider: String
  ) async throws(SendFailure) -> [String: Any]? {
    let response: HTTPClientResponse
    do {
      response = try await client.execute(request, timeout: timeout)
    } catch {
      // Refused, timed out or cut off. The request carries its Idempotency-Key, so the provider
      // itself drops a second copy when the first did arrive: retrying is safe.
      throw .temporary("\(provider): no answer (\(error))")
    }
    let body: String
    do {
      body = String(buffer: try await response.body.collect(upTo: 1 << 20))
    } catch {
      throw .temporary("\(provider) answered \(response.status.code) but its body could not be read: \(error)")
    }
    guard (200..<300).contains(response.status.code) else {
      throw failure(status: response.status, headers: response.headers, body: body, provider: provider)
    }
    return try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
  }
}

package struct HTTPSMSSettings: Sendable, Equatable {
  package var url: String
  package var username: String?
  package var password: String?
  package var bearerToken: String?
  package var from: String
  package var formEncoded: Bool
  package var messageIDField: String?
  package var timeout: TimeAmount = .seconds(15)

  package init(
    url: String, username: String? = nil, password: String? = nil, bearerToken: String? = nil, from: String,
    formEncoded: Bool, messageIDField: String? = nil
  ) {
    self.url = url
    self.username = username
    self.password = password
    self.bearerToken = bearerToken
    self.from = from
    self.formEncoded = formEncoded
    self.messageIDField = messageIDField
  }
}

/// SMS through a REST gateway in the common shape (Twilio, Vonage, MessageBird...): a form or JSON
/// POST of to/from/body with basic or bearer auth; the provider's message id is read from the JSON reply.
package struct HTTPSMSProvider: DeliveryProvider {
  let name: String
  let settings: HTTPSMSSettings
  let client: HTTPClient

  package init(name: String, settings: HTTPSMSSettings, client: HTTPClient = .shared) {
    self.name = name
    self.settings = settings
    self.client = client
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    var request = HTTPClientRequest(url: settings.url)
    request.method = .POST
    request.headers.add(name: "Idempotency-Key", value: message.idempotencyKey)
    request.headers.add(name: "Accept", value: "application/json")
    if let token = settings.bearerToken {
      request.headers.add(name: "Authorization", value: "Bearer \(token)")
    } else if let username = settings.username {
      let credentials = Data("\(username):\(settings.password ?? "")".utf8).base64EncodedString()
      request.headers.add(name: "Authorization", value: "Basic \(credentials)")
    }
    if settings.formEncoded {
      var form = URLComponents()
      form.queryItems = [
        URLQueryItem(name: "To", value: message.recipient), URLQueryItem(name: "From", value: settings.from),
        URLQueryItem(name: "Body", value: message.body),
      ]
      // URLComponents leaves "+" alone, which a form decoder reads as a space.
      let encoded = (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
      request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
      request.body = .bytes(ByteBuffer(string: encoded))
    } else {
      let payload = SMSPayload(to: message.recipient, from: settings.from, body: message.body, reference: message.idempotencyKey)
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(bytes: try HTTPOutcome.json(payload)))
    }
    guard let object = try await HTTPOutcome.send(request, client: client, timeout: settings.timeout, provider: name) else {
      // Accepted (2xx) but without a JSON reply: sent, with no id to match webhooks against.
      return nil
    }
    let fields = settings.messageIDField.map { [$0] } ?? ["sid", "id", "message_id", "messageId"]
    for field in fields {
      if let text = object[field] as? String { return text }
      if let number = object[field] as? Int { return String(number) }
    }
    return nil
  }

  package func shutdown() async {}
}

/// The JSON body of an SMS gateway request.
struct SMSPayload: Encodable {
  var to: String
  var from: String
  var body: String
  var reference: String
}

/// The JSON body of a webhook provider's request.
struct WebhookPayload: Encodable {
  var id: String
  var idempotencyKey: String
  var channel: String
  var recipient: String
  var subject: String
  var body: String
  var campaignID: String?

  enum CodingKeys: String, CodingKey {
    case id, channel, recipient, subject, body
    case idempotencyKey = "idempotency_key"
    case campaignID = "campaign_id"
  }
}

package struct WebhookProviderSettings: Sendable, Equatable {
  package var url: String
  package var signingSecret: String?
  package var timeout: TimeAmount = .seconds(15)

  package init(url: String, signingSecret: String? = nil) {
    self.url = url
    self.signingSecret = signingSecret
  }
}

/// Any channel as a JSON POST of the rendered message to a URL of the user's.
package struct WebhookProvider: DeliveryProvider {
  let name: String
  let settings: WebhookProviderSettings
  let client: HTTPClient

  package init(name: String, settings: WebhookProviderSettings, client: HTTPClient = .shared) {
    self.name = name
    self.settings = settings
    self.client = client
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    let body = try HTTPOutcome.json(
      WebhookPayload(
        id: message.id.lowercasedString, idempotencyKey: message.idempotencyKey, channel: message.channel,
        recipient: message.recipient, subject: message.subject, body: message.body,
        campaignID: message.campaignID?.lowercasedString))
    var request = HTTPClientRequest(url: settings.url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    request.headers.add(name: "Idempotency-Key", value: message.idempotencyKey)
    if let secret = settings.signingSecret {
      let timestamp = Int(Date().timeIntervalSince1970)
      request.headers.add(name: "X-Herald-Signature", value: WebhookSignature.header(secret: secret, timestamp: timestamp, body: body))
    }
    request.body = .bytes(ByteBuffer(bytes: body))
    let object = try await HTTPOutcome.send(request, client: client, timeout: settings.timeout, provider: name)
    return object?["id"] as? String
  }

  package func shutdown() async {}
}

/// `X-Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the scheme of both
/// Herald's outgoing webhooks and the provider webhooks it accepts (as Stripe's).
package enum WebhookSignature {
  package static func header(secret: String, timestamp: Int, body: Data) -> String {
    "t=\(timestamp),v1=\(hex(secret: secret, timestamp: timestamp, body: body))"
  }

  static func hex(secret: String, timestamp: Int, body: Data) -> String {
    var signed = Data("\(timestamp).".utf8)
    signed.append(body)
    let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
    return mac.map { String(format: "%02x", $0) }.joined()
  }

  package enum Problem: Error, Equatable, CustomStringConvertible {
    case missing, malformed, stale(seconds: Int), mismatch
    package var description: String {
      switch self {
      case .missing: "the X-Herald-Signature header is missing"
      case .malformed: "the X-Herald-Signature header is not of the form t=<unix seconds>,v1=<hex>"
      case .stale(let seconds): "the signature's timestamp is \(seconds) s away from now (at most 300 s allowed)"
      case .mismatch: "the signature does not match the body"
      }
    }
  }

  /// Checks a header against the body; the timestamp must be within five minutes of `now`.
  package static func verify(header: String, secret: String, body: Data, now: Date = Date()) throws(Problem) {
    guard !header.isEmpty else { throw .missing }
    var timestamp: Int?
    var signatures: [String] = []
    for part in header.split(separator: ",") {
      let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      guard pair.count == 2 else { throw .malformed }
      if pair[0] == "t" { timestamp = Int(pair[1]) } else if pair[0] == "v1" { signatures.append(pair[1].lowercased()) }
    }
    guard let timestamp, !signatures.isEmpty else { throw .malformed }
    let skew = abs(Int(now.timeIntervalSince1970) - timestamp)
    guard skew <= 300 else { throw .stale(seconds: skew) }
    let expected = Array(hex(secret: secret, timestamp: timestamp, body: body).utf8)
    // Compared in constant time.
    let matches = signatures.contains { candidate in
      let bytes = Array(candidate.utf8)
      guard bytes.count == expected.count else { return false }
      return zip(bytes, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
    guard matches else { throw .mismatch }
  }
}
