import Crypto
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
  /// "email" or "sms".
  package var channel: String

  package init(subscriber: UUID, campaign: UUID, channel: String) {
    self.subscriber = subscriber
    self.campaign = campaign
    self.channel = channel
  }

  static let purpose = "unsubscribe links v1"

  /// The signed text; nil when no key is configured.
  package func text(keys: [(id: String, key: Data)]) -> String? {
    guard let signing = keys.first else { return nil }
    var payload = Data()
    payload.append(contentsOf: subscriber.bytes)
    payload.append(contentsOf: campaign.bytes)
    payload.append(channel == "sms" ? UInt8(ascii: "s") : UInt8(ascii: "e"))
    let signed = "v1.\(signing.id).\(Self.base64URL(payload))"
    let mac = HMAC<SHA256>.authenticationCode(for: Data(signed.utf8), using: SymmetricKey(data: signing.key))
    return "\(signed).\(Self.base64URL(Data(mac)))"
  }

  /// The token `text` names, when it is well formed and its signature checks out under one of
  /// `keys` (compared in constant time); nil otherwise, whatever was wrong.
  package init?(verifying text: String, keys: [(id: String, key: Data)]) {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard text.utf8.count <= 200, parts.count == 4, parts[0] == "v1",
      let key = keys.first(where: { $0.id == parts[1] })?.key,
      let payload = Self.data(base64URL: parts[2]), payload.count == 33,
      let mac = Self.data(base64URL: parts[3]),
      HMAC<SHA256>.isValidAuthenticationCode(
        mac, authenticating: Data(text.utf8.dropLast(parts[3].utf8.count + 1)), using: SymmetricKey(data: key))
    else { return nil }
    let bytes = [UInt8](payload)
    guard bytes[32] == UInt8(ascii: "e") || bytes[32] == UInt8(ascii: "s") else { return nil }
    guard let subscriber = UUID(bytes: bytes[0..<16]), let campaign = UUID(bytes: bytes[16..<32]) else { return nil }
    self.subscriber = subscriber
    self.campaign = campaign
    channel = bytes[32] == UInt8(ascii: "s") ? "sms" : "email"
  }

  /// Base64url without padding, in one pass over base64's text (the relay makes two per message).
  static func base64URL(_ data: Data) -> String {
    let text = data.base64EncodedString()
    return String(
      decoding: text.utf8.compactMap { byte -> UInt8? in
        switch byte {
        case UInt8(ascii: "+"): UInt8(ascii: "-")
        case UInt8(ascii: "/"): UInt8(ascii: "_")
        case UInt8(ascii: "="): nil
        default: byte
        }
      }, as: UTF8.self)
  }

  static func data(base64URL text: Substring) -> Data? {
    guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
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

  /// The link for one recipient of a campaign; nil without a key.
  package func url(_ token: UnsubscribeToken) -> String? {
    token.text(keys: keys).map { "\(publicURL)/u/\($0)" }
  }

  /// The token a link carries, when it is genuine.
  package func verify(_ text: String) -> UnsubscribeToken? {
    UnsubscribeToken(verifying: text, keys: keys)
  }
}
