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
    UnsubscribeSigner(keys: keys, prefix: "").map { $0.sign(self) }
  }

  /// The 33 signed bytes: subscriber, campaign, channel.
  func withPayload<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 33) { payload in
      withUnsafeBytes(of: subscriber.uuid) { payload.baseAddress!.initialize(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: 16) }
      withUnsafeBytes(of: campaign.uuid) {
        (payload.baseAddress! + 16).initialize(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: 16)
      }
      payload[32] = channel == "sms" ? UInt8(ascii: "s") : UInt8(ascii: "e")
      return body(UnsafeRawBufferPointer(payload))
    }
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

  static let base64URLDigits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

  /// Appends `bytes` in base64url without padding (RFC 4648 §5).
  static func appendBase64URL(_ bytes: UnsafeRawBufferPointer, to text: inout [UInt8]) {
    let digits = base64URLDigits
    var index = 0
    while index < bytes.count {
      let remaining = bytes.count - index
      let group =
        UInt32(bytes[index]) << 16 | (remaining > 1 ? UInt32(bytes[index + 1]) << 8 : 0) | (remaining > 2 ? UInt32(bytes[index + 2]) : 0)
      text.append(digits[Int(group >> 18 & 63)])
      text.append(digits[Int(group >> 12 & 63)])
      if remaining > 1 { text.append(digits[Int(group >> 6 & 63)]) }
      if remaining > 2 { text.append(digits[Int(group & 63)]) }
      index += 3
    }
  }

  static func data(base64URL text: Substring) -> Data? {
    guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
  }
}

/// Signs tokens under the first (current) key, keyed once and copied per token: the relay signs
/// one per recipient. Not Sendable (swift-crypto's HMAC is not); made per chunk.
package struct UnsubscribeSigner {
  /// `<prefix>v1.<key id>.`: what every link of this signer starts with.
  private let head: [UInt8]
  /// Where the signed text starts in `head` (after the prefix, e.g. the public URL and `/u/`).
  private let signedStart: Int
  private let keyed: HMAC<SHA256>

  /// Nil when no key is configured.
  init?(keys: [(id: String, key: Data)], prefix: String) {
    guard let signing = keys.first else { return nil }
    head = Array("\(prefix)v1.\(signing.id).".utf8)
    signedStart = prefix.utf8.count
    keyed = HMAC<SHA256>(key: SymmetricKey(data: signing.key))
  }

  /// `<prefix>v1.<key id>.<payload>.<mac>`: the MAC covers everything after the prefix up to its dot.
  package func sign(_ token: UnsubscribeToken) -> String {
    var text = head
    text.reserveCapacity(head.count + 44 + 1 + 43)
    token.withPayload { UnsubscribeToken.appendBase64URL($0, to: &text) }
    var mac = keyed
    mac.update(data: text[signedStart...])
    let code = mac.finalize()
    text.append(UInt8(ascii: "."))
    code.withUnsafeBytes { UnsubscribeToken.appendBase64URL($0, to: &text) }
    return String(decoding: text, as: UTF8.self)
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
  package func signer() -> UnsubscribeSigner? {
    UnsubscribeSigner(keys: keys, prefix: "\(publicURL)/u/")
  }

  /// The link for one recipient of a campaign; nil without a key.
  package func url(_ token: UnsubscribeToken) -> String? {
    signer()?.sign(token)
  }

  /// The token a link carries, when it is genuine.
  package func verify(_ text: String) -> UnsubscribeToken? {
    UnsubscribeToken(verifying: text, keys: keys)
  }
}
