import Foundation
import HeraldCore

/// The token of a tracking link of a campaign e-mail (SPEC §10): `/t/o/TOKEN`, the open pixel, or
/// `/t/c/TOKEN`, a click. It names the campaign and the subscriber (the message is theirs: its
/// idempotency key is `campaign:subscriber`), the link's place among the message's tracked links
/// and how many there are, and for a click the target URL — inside the signed value, so a link
/// can never be made to redirect anywhere else. Signed by the campaign relay, checked by
/// delivery, under a key derived from HERALD_SECRETS_KEY for this purpose only.
package struct TrackingToken: Sendable, Equatable {
  package enum Kind: UInt8, Sendable {
    case open = 0x6f  // "o"
    case click = 0x63  // "c"

    /// The route's letter and the RPC's name: "o"/"open", "c"/"click".
    package var name: String { self == .open ? "open" : "click" }
  }

  /// The first payload byte of a token that carries its message's key (upper case).
  static func keyedByte(_ kind: Kind) -> UInt8 { kind.rawValue - 0x20 }

  package var kind: Kind
  package var campaign: UUID
  package var subscriber: UUID
  /// The link's place among the message's tracked links (0 for the pixel)...
  package var link: Int
  /// ...and how many tracked links the message has (0 for the pixel).
  package var links: Int
  /// Where a click goes; empty for the pixel.
  package var url: String
  /// The message's idempotency key when it is not `campaign:subscriber` (a journey's send,
  /// `journey:…`; `campaign` then holds the journey's id). At most 255 bytes.
  package var key: String?

  package init(
    kind: Kind, campaign: UUID, subscriber: UUID, link: Int = 0, links: Int = 0, url: String = "", key: String? = nil
  ) {
    self.kind = kind
    self.campaign = campaign
    self.subscriber = subscriber
    self.link = link
    self.links = links
    self.url = url
    self.key = key
  }

  package static let purpose = "tracking links v1"
  /// The most links of one message that are tracked (the place is one byte).
  package static let maxLinks = 255
  /// Tokens longer than this are refused unread (a target URL of up to about 2,900 bytes fits).
  package static let maxLength = 4096

  /// The message the token names: its key, or the campaign relay's `campaign:subscriber`.
  package var idempotencyKey: String { key ?? "\(campaign.lowercasedString):\(subscriber.lowercasedString)" }

  /// Kind, campaign, subscriber, link, links, [the key's length and bytes, for a keyed token],
  /// then the URL's bytes.
  package func sign(with signer: SignedTokenSigner) -> String {
    let url = Array(url.utf8)
    let keyBytes = key.map { Array($0.utf8.prefix(255)) }
    let head = 35 + (keyBytes.map { 1 + $0.count } ?? 0)
    return signer.sign(count: head + url.count) { payload in
      payload[0] = keyBytes == nil ? kind.rawValue : Self.keyedByte(kind)
      payload.storeUUID(campaign, at: 1)
      payload.storeUUID(subscriber, at: 17)
      payload[33] = UInt8(clamping: link)
      payload[34] = UInt8(clamping: links)
      if let keyBytes {
        payload[35] = UInt8(keyBytes.count)
        keyBytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: payload[36..<head]).copyMemory(from: $0) }
      }
      url.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: payload[head...]).copyMemory(from: $0) }
    }
  }

  /// The token `text` names, when it is well formed and its signature checks out under one of
  /// `keys`; nil otherwise, whatever was wrong.
  package init?(verifying text: String, keys: [(id: String, key: Data)]) {
    guard let bytes = SignedToken.open(text, keys: keys, maxLength: Self.maxLength), bytes.count >= 35,
      let kind = Kind(rawValue: bytes[0]) ?? Kind(rawValue: bytes[0] &+ 0x20), let campaign = UUID(bytes: bytes[1..<17]),
      let subscriber = UUID(bytes: bytes[17..<33])
    else { return nil }
    var head = bytes.startIndex + 35
    var key: String?
    if bytes[bytes.startIndex] == Self.keyedByte(kind) {
      guard bytes.count >= 36 else { return nil }
      let length = Int(bytes[head])
      guard bytes.endIndex - (head + 1) >= length, length > 0 else { return nil }
      key = String(decoding: bytes[(head + 1)..<(head + 1 + length)], as: UTF8.self)
      head += 1 + length
    }
    let url = String(decoding: bytes[head...], as: UTF8.self)
    guard kind == .open ? url.isEmpty : (url.hasPrefix("https://") || url.hasPrefix("http://")) else { return nil }
    self.init(kind: kind, campaign: campaign, subscriber: subscriber, link: Int(bytes[33]), links: Int(bytes[34]), url: url, key: key)
  }
}

/// Where tracking links point (`<public URL>/t/o/…`, `/t/c/…`) and the keys that sign and check
/// them; signing needs HERALD_SECRETS_KEY.
package struct TrackingLinks: Sendable {
  package var publicURL: String
  let keys: [(id: String, key: Data)]

  package init(publicURL: String, secrets: SecretBox) {
    self.publicURL = publicURL
    self.keys = secrets.derivedKeys(purpose: TrackingToken.purpose)
  }

  package static let none = TrackingLinks(publicURL: "", secrets: .none)

  /// What signs the open and click links of many messages; nil without a key.
  package func signers() -> (open: SignedTokenSigner, click: SignedTokenSigner)? {
    guard let open = SignedTokenSigner(keys: keys, prefix: "\(publicURL)/t/o/"),
      let click = SignedTokenSigner(keys: keys, prefix: "\(publicURL)/t/c/")
    else { return nil }
    return (open, click)
  }

  /// The token a link carries, when it is genuine.
  package func verify(_ text: String) -> TrackingToken? {
    TrackingToken(verifying: text, keys: keys)
  }
}
