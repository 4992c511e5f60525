import Crypto
import Foundation

/// The signed tokens of Herald's public links (`/u/TOKEN` unsubscribe links, `/t/o/TOKEN` and
/// `/t/c/TOKEN` tracking links): `v1.<key id>.<payload>.<mac>`, payload and MAC in base64url
/// without padding, the MAC an HMAC-SHA256 over everything before its dot, under a key derived
/// from HERALD_SECRETS_KEY for one purpose. Checking one needs no database lookup; naming the key
/// lets the secrets key rotate while links already sent keep working.
package enum SignedToken {
  /// The payload of `text` when it is well formed and its MAC checks out under one of `keys`
  /// (compared in constant time); nil otherwise, whatever was wrong.
  package static func open(_ text: some StringProtocol, keys: [(id: String, key: Data)], maxLength: Int) -> [UInt8]? {
    guard text.utf8.count <= maxLength else { return nil }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == "v1", let key = keys.first(where: { $0.id == parts[1] })?.key,
      let payload = data(base64URL: parts[2]), let mac = data(base64URL: parts[3]),
      HMAC<SHA256>.isValidAuthenticationCode(
        mac, authenticating: Data(text.utf8.dropLast(parts[3].utf8.count + 1)), using: SymmetricKey(data: key))
    else { return nil }
    return [UInt8](payload)
  }

  static let base64URLDigits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

  /// Appends `bytes` in base64url without padding (RFC 4648 §5).
  package static func appendBase64URL(_ bytes: UnsafeRawBufferPointer, to text: inout [UInt8]) {
    let digits = base64URLDigits
    var index = 0
    while index < bytes.count {
      let remaining = bytes.count - index
      let group =
        UInt32(bytes[index]) << 16 | (remaining > 1 ? UInt32(bytes[index + 1]) << 8 : 0)
        | (remaining > 2 ? UInt32(bytes[index + 2]) : 0)
      text.append(digits[Int(group >> 18 & 63)])
      text.append(digits[Int(group >> 12 & 63)])
      if remaining > 1 { text.append(digits[Int(group >> 6 & 63)]) }
      if remaining > 2 { text.append(digits[Int(group & 63)]) }
      index += 3
    }
  }

  static func isBase64URLDigit(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
      UInt8(ascii: "-"), UInt8(ascii: "_"):
      true
    default: false
    }
  }

  /// Decodes base64url without padding; nil for any other character.
  package static func data(base64URL text: some StringProtocol) -> Data? {
    guard text.utf8.allSatisfy(isBase64URLDigit) else { return nil }
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
  }
}

/// Signs tokens under the first (current) key, keyed once and copied per token: a relay signs one
/// or more per recipient. Not Sendable (swift-crypto's HMAC is not); made per batch.
package struct SignedTokenSigner {
  /// `<prefix>v1.<key id>.`: what every link of this signer starts with.
  private let head: [UInt8]
  /// Where the signed text starts in `head` (after the prefix, e.g. the public URL and `/u/`).
  private let signedStart: Int
  private let keyed: HMAC<SHA256>

  /// Nil when no key is configured.
  package init?(keys: [(id: String, key: Data)], prefix: String) {
    guard let signing = keys.first else { return nil }
    head = Array("\(prefix)v1.\(signing.id).".utf8)
    signedStart = prefix.utf8.count
    keyed = HMAC<SHA256>(key: SymmetricKey(data: signing.key))
  }

  /// `<prefix>v1.<key id>.<payload>.<mac>`, the payload written by `payload` into a buffer of
  /// `count` bytes; the MAC covers everything after the prefix up to its dot.
  package func sign(count: Int, _ payload: (UnsafeMutableRawBufferPointer) -> Void) -> String {
    var text = head
    text.reserveCapacity(head.count + (count * 4 + 2) / 3 + 1 + 43)
    withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
      payload(buffer)
      SignedToken.appendBase64URL(UnsafeRawBufferPointer(buffer), to: &text)
    }
    var mac = keyed
    mac.update(data: text[signedStart...])
    let code = mac.finalize()
    text.append(UInt8(ascii: "."))
    code.withUnsafeBytes { SignedToken.appendBase64URL($0, to: &text) }
    return String(decoding: text, as: UTF8.self)
  }
}

extension UnsafeMutableRawBufferPointer {
  /// Writes the id's 16 bytes at `offset`.
  package func storeUUID(_ id: UUID, at offset: Int) {
    Swift.withUnsafeBytes(of: id.uuid) { UnsafeMutableRawBufferPointer(rebasing: self[offset..<offset + 16]).copyMemory(from: $0) }
  }
}
