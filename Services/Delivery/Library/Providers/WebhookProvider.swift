import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1

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
        recipient: message.recipient, subject: message.subject, body: message.body, format: message.format,
        textBody: message.textBody, listUnsubscribeURL: message.listUnsubscribeURL, campaignID: message.campaignID?.lowercasedString))
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

/// The JSON body of a webhook provider's request.
private struct WebhookPayload: Encodable {
  var id: String
  var idempotencyKey: String
  var channel: String
  var recipient: String
  var subject: String
  var body: String
  /// "text" or "html".
  var format: String
  var textBody: String?
  /// An e-mail's one-click unsubscribe URL, for the List-Unsubscribe headers the provider writes.
  var listUnsubscribeURL: String?
  var campaignID: String?

  enum CodingKeys: String, CodingKey {
    case id, channel, recipient, subject, body, format
    case textBody = "text_body"
    case listUnsubscribeURL = "list_unsubscribe_url"
    case idempotencyKey = "idempotency_key"
    case campaignID = "campaign_id"
  }
}
