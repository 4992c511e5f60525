import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// How a WhatsApp provider reaches the Cloud API: from `WhatsAppSettings`.
package struct WhatsAppSettings: Sendable, Equatable {
  package var url: String
  package var phoneNumberID: String
  package var phoneNumber: String
  package var accessTokenVariable: String
  package var appSecretVariable: String
  package var verifyTokenVariable: String?
  package var trustedCAPEM: String?
  package var timeout: TimeAmount = .seconds(15)

  package static let productionURL = "https://graph.facebook.com/v21.0"
}

/// WhatsApp Business in the Cloud API's shape: `POST {url}/{phone-number-id}/messages` with a
/// bearer token; a template message (name, language, the body's parameters) or free text.
package struct WhatsAppProvider: DeliveryProvider {
  let settings: WhatsAppSettings
  let endpoint: ProviderEndpoint
  var name: String { endpoint.name }

  package init(name: String, settings: WhatsAppSettings, client: HTTPClient, keys: [String: String]) {
    self.settings = settings
    self.endpoint = ProviderEndpoint(name: name, client: client, keys: keys, trustedCAPEM: settings.trustedCAPEM)
  }

  package func send(_ message: OutgoingMessage) async throws(SendFailure) -> String? {
    let token = try ProviderKey.bearer(settings.accessTokenVariable, from: endpoint.keys)
    var request = endpoint.post("\(settings.url)/\(settings.phoneNumberID)/messages")
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: try Self.payload(message)))
    // {"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid...."}]}
    let object = try await HTTPOutcome.send(request, client: endpoint.client, timeout: settings.timeout, provider: name, idempotent: false)
    return ((object?["messages"] as? [[String: Any]])?.first?["id"] as? String)
  }

  static func payload(_ message: OutgoingMessage) throws(SendFailure) -> Data {
    // The Cloud API takes the number without its "+".
    var object: [String: Any] = [
      "messaging_product": "whatsapp", "recipient_type": "individual", "to": String(message.recipient.drop { $0 == "+" }),
    ]
    if let template = message.payload?.whatsapp {
      var fields: [String: Any] = ["name": template.name, "language": ["code": template.language]]
      if !template.parameters.isEmpty {
        fields["components"] = [
          ["type": "body", "parameters": template.parameters.map { ["type": "text", "text": $0] }] as [String: Any]
        ]
      }
      object["type"] = "template"
      object["template"] = fields
    } else {
      object["type"] = "text"
      object["text"] = ["preview_url": false, "body": message.body] as [String: Any]
    }
    guard let body = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
      throw .permanent("the message could not be written as JSON")
    }
    return body
  }

  package func shutdown() async {}
}
