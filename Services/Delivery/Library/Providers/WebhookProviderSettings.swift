import NIOCore

/// Where a webhook provider posts messages, and the secret it signs them with: from `WebhookSettings`.
package struct WebhookProviderSettings: Sendable, Equatable {
  package var url: String
  package var signingSecret: String?
  package var timeout: TimeAmount = .seconds(15)

  package init(url: String, signingSecret: String? = nil) {
    self.url = url
    self.signingSecret = signingSecret
  }
}
