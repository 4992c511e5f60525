import Crypto
import Foundation

/// A token in the local part of an address Herald puts on its e-mail (SPEC §10, §11):
/// `reply+TOKEN@<inbound domain>` in Reply-To, so that a reply is matched to the message it
/// answers, and `unsubscribe+TOKEN@<inbound domain>` in List-Unsubscribe's `mailto:`, so that an
/// e-mail to it unsubscribes the message's recipient. A local part may be at most 64 octets (RFC
/// 5321) and relays may change its case, so the token is short and case-insensitive: the kind (1
/// byte), the message id (16) and an HMAC-SHA256 of both truncated to 80 bits (10), in lower-case
/// base32 without padding (44 characters), under a key derived from HERALD_SECRETS_KEY for this
/// purpose. Every configured key is tried when one is checked, so the secrets key can rotate
/// while addresses already sent keep working. Checking one needs no database lookup.
package struct AddressToken: Sendable, Equatable {
  package enum Kind: UInt8, Sendable {
    case reply = 0x72  // "r"
    case unsubscribe = 0x75  // "u"

    /// The local part's prefix: `reply` or `unsubscribe`.
    package var prefix: String { self == .reply ? "reply" : "unsubscribe" }
  }

  package var kind: Kind
  package var message: UUID

  package init(kind: Kind, message: UUID) {
    self.kind = kind
    self.message = message
  }

  package static let purpose = "address tokens v1"
  static let macBytes = 10
  static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

  func signed(_ bytes: [UInt8], key: Data) -> [UInt8] {
    Array(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: key)).prefix(Self.macBytes))
  }

  var payload: [UInt8] {
    var bytes = [kind.rawValue]
    withUnsafeBytes(of: message.uuid) { bytes.append(contentsOf: $0) }
    return bytes
  }

  /// `prefix+TOKEN@domain`, signed with the first of `keys`; nil without a key.
  package func address(domain: String, keys: [(id: String, key: Data)]) -> String? {
    guard let key = keys.first?.key else { return nil }
    let bytes = payload + signed(payload, key: key)
    return "\(kind.prefix)+\(Self.base32(bytes))@\(domain)"
  }

  /// The token of an address `reply+TOKEN@…` or `unsubscribe+TOKEN@…` (any case), when its MAC
  /// checks out under one of `keys` (compared in constant time); nil otherwise.
  package static func open(address: String, keys: [(id: String, key: Data)]) -> AddressToken? {
    let lower = address.lowercased()
    guard let at = lower.lastIndex(of: "@"), let plus = lower[..<at].firstIndex(of: "+") else { return nil }
    let prefix = lower[..<plus]
    guard let kind = [Kind.reply, .unsubscribe].first(where: { $0.prefix == prefix }),
      let bytes = data(base32: lower[lower.index(after: plus)..<at]), bytes.count == 17 + macBytes, bytes[0] == kind.rawValue
    else { return nil }
    let message = bytes[1..<17].withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
    let token = AddressToken(kind: kind, message: message)
    let mac = Array(bytes[17...])
    for (_, key) in keys {
      let expected = token.signed(Array(bytes[..<17]), key: key)
      if ConstantTime.equal(mac, expected) { return token }
    }
    return nil
  }

  /// Lower-case base32 (RFC 4648 alphabet) without padding.
  static func base32(_ bytes: [UInt8]) -> String {
    var text: [UInt8] = []
    var buffer = 0
    var bits = 0
    for byte in bytes {
      buffer = buffer << 8 | Int(byte)
      bits += 8
      while bits >= 5 {
        text.append(alphabet[(buffer >> (bits - 5)) & 31])
        bits -= 5
      }
    }
    if bits > 0 { text.append(alphabet[(buffer << (5 - bits)) & 31]) }
    return String(decoding: text, as: UTF8.self)
  }

  static func data(base32 text: Substring) -> [UInt8]? {
    var bytes: [UInt8] = []
    var buffer = 0
    var bits = 0
    for character in text.utf8 {
      guard let value = alphabet.firstIndex(of: character) else { return nil }
      buffer = (buffer << 5 | value) & 0xFFFF
      bits += 5
      if bits >= 8 {
        bytes.append(UInt8((buffer >> (bits - 8)) & 0xFF))
        bits -= 8
      }
    }
    return bytes
  }
}
