import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

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
private struct SMSPayload: Encodable {
  var to: String
  var from: String
  var body: String
  var reference: String
}
