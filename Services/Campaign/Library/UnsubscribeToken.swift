import Foundation
import HeraldCore
import HeraldServerKit

/// The token of a campaign e-mail's unsubscribe link (`/u/TOKEN`, SPEC §10): who (subscriber),
/// from what (campaign) and which channel, signed with HMAC-SHA256 under a key derived from
/// HERALD_SECRETS_KEY, so that checking it needs no database lookup. Versioned and naming its key
/// (`v1.<key id>.<payload>.<mac>`, base64url), so the key can rotate while older links still work.
package struct UnsubscribeToken: Sendable, Equatable {
  package var subscriber: UUID
  package var campaign: UUID
  /// "email", "sms", "whatsapp" or "push".
  package var channel: String

  /// Each channel's byte in the token.
  static let channelBytes: [String: UInt8] = [
    "email": UInt8(ascii: "e"), "sms": UInt8(ascii: "s"), "whatsapp": UInt8(ascii: "w"), "push": UInt8(ascii: "p"),
  ]

  package init(subscriber: UUID, campaign: UUID, channel: String) {
    self.subscriber = subscriber
    self.campaign = campaign
    self.channel = channel
  }

  static let purpose = "unsubscribe links v1"

  /// The signed text; nil when no key is configured.
  package func text(keys: [(id: String, key: Data)]) -> String? {
    SignedTokenSigner(keys: keys, prefix: "").map(sign)
  }

  /// The signed token after the signer's prefix. The 33 signed bytes: subscriber, campaign, channel.
  func sign(with signer: SignedTokenSigner) -> String {
    signer.sign(count: 33) { payload in
      payload.storeUUID(subscriber, at: 0)
      payload.storeUUID(campaign, at: 16)
      payload[32] = Self.channelBytes[channel] ?? UInt8(ascii: "e")
    }
  }

  /// The token `text` names, when it is well formed and its signature checks out under one of
  /// `keys` (compared in constant time); nil otherwise, whatever was wrong.
  package init?(verifying text: String, keys: [(id: String, key: Data)]) {
    guard let bytes = SignedToken.open(text, keys: keys, maxLength: 200), bytes.count == 33,
      let channel = Self.channelBytes.first(where: { $0.value == bytes[32] })?.key,
      let subscriber = UUID(bytes: bytes[0..<16]), let campaign = UUID(bytes: bytes[16..<32])
    else { return nil }
    self.subscriber = subscriber
    self.campaign = campaign
    self.channel = channel
  }
}

/// Where a campaign message's unsubscribe link points (`<public URL>/u/<token>`) and the keys
/// that sign and check its token; `none` when HERALD_SECRETS_KEY is not set (no links).
package struct UnsubscribeLinks: Sendable {
  package var publicURL: String
  let keys: [(id: String, key: Data)]

  package init(publicURL: String, secrets: SecretBox) {
    self.publicURL = publicURL
    self.keys = secrets.derivedKeys(purpose: UnsubscribeToken.purpose)
  }

  package static let none = UnsubscribeLinks(publicURL: "", secrets: .none)

  /// Whether links can be made (a key is configured).
  package var canSign: Bool { !keys.isEmpty }

  /// What makes links (`<public URL>/u/<token>`) for many recipients; nil without a key.
  package func signer() -> SignedTokenSigner? {
    SignedTokenSigner(keys: keys, prefix: "\(publicURL)/u/")
  }

  /// The link for one recipient of a campaign; nil without a key.
  package func url(_ token: UnsubscribeToken) -> String? {
    signer().map(token.sign)
  }

  /// The token a link carries, when it is genuine.
  package func verify(_ text: String) -> UnsubscribeToken? {
    UnsubscribeToken(verifying: text, keys: keys)
  }
}
