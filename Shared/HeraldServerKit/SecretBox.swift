import Crypto
import Foundation
import HeraldCore

/// Secrets at rest (DKIM private keys, provider passwords and tokens): sealed with AES-256-GCM
/// under a key from the environment, `HERALD_SECRETS_KEY` (provider secrets an older release
/// stored in clear stay so until SealSecrets seals them). A sealed value names the key that sealed it
/// (`sealed:v1:<key id>:<base64 of nonce, ciphertext and tag>`), so the key can rotate: give the
/// new key first and the old ones after it (`new-id:BASE64,old-id:BASE64`); new values are sealed
/// with the first, and values sealed with any listed key still open.
package struct SecretBox: Sendable, Equatable {
  /// A key's id and its 32 bytes.
  struct Key: Sendable, Equatable {
    var id: String
    var bytes: Data
  }

  let keys: [Key]

  package static let variable = "HERALD_SECRETS_KEY"
  static let expected =
    "one or more comma-separated keys, each 32 random bytes in base64 (`openssl rand -base64 32`), optionally prefixed by an id and a colon (id:BASE64); the first seals"

  /// No key: sealing and opening throw, naming the variable.
  package static let none = SecretBox(keys: [])

  init(keys: [Key]) {
    self.keys = keys
  }

  /// Parses `HERALD_SECRETS_KEY`'s value; nil or empty is `none`. A key without an id gets the
  /// first 8 hex digits of its SHA-256.
  package init(_ specification: String?) throws(ConfigurationError) {
    guard let specification, !specification.isEmpty else {
      self = .none
      return
    }
    var keys: [Key] = []
    for part in specification.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
      let id: String
      let encoded: Substring
      if let colon = part.firstIndex(of: ":") {
        id = String(part[..<colon])
        encoded = part[part.index(after: colon)...]
      } else {
        id = ""
        encoded = Substring(part)
      }
      guard let bytes = Data(base64Encoded: String(encoded)), bytes.count == 32 else {
        throw .malformed(variable: Self.variable, value: "<redacted>", expected: Self.expected)
      }
      let keyID = id.isEmpty ? SHA256.hash(data: bytes).prefix(4).map { String(format: "%02x", $0) }.joined() : id
      guard keyID.wholeMatch(of: /[A-Za-z0-9_-]{1,32}/) != nil, !keys.contains(where: { $0.id == keyID }) else {
        throw .malformed(
          variable: Self.variable, value: "<redacted>", expected: "key ids of 1 to 32 letters, digits, _ or -, each once")
      }
      keys.append(Key(id: keyID, bytes: bytes))
    }
    self.keys = keys
  }

  package enum Failure: Error, Equatable, CustomStringConvertible {
    case noKey
    case unknownKey(String)
    case malformed
    case tampered(String)

    package var description: String {
      switch self {
      case .noKey: "\(SecretBox.variable) is not set: secrets are stored only encrypted (see docs/operations.md)"
      case .unknownKey(let id): "the secret was sealed with key '\(id)', which \(SecretBox.variable) does not hold"
      case .malformed: "the stored secret is not a sealed value"
      case .tampered(let id): "the secret sealed with key '\(id)' does not open: it or the key was changed"
      }
    }
  }

  /// Keys for `purpose` (e.g. signing links), derived from each configured key with HKDF-SHA256,
  /// under the same ids and in the same order: the first signs, all verify.
  /// (The key's bytes: swift-crypto's key type is not Sendable.)
  package func derivedKeys(purpose: String) -> [(id: String, key: Data)] {
    keys.map { key in
      let derived = HKDF<SHA256>.deriveKey(
        inputKeyMaterial: SymmetricKey(data: key.bytes), info: Data("herald \(purpose)".utf8), outputByteCount: 32)
      return (key.id, derived.withUnsafeBytes { Data($0) })
    }
  }

  /// Whether a key is configured (a secret can be sealed).
  package var canSeal: Bool { !keys.isEmpty }

  /// How every sealed value starts; the key's id and the sealed bytes follow.
  package static let sealedPrefix = "sealed:v1:"

  package func seal(_ plaintext: Data) throws(Failure) -> String {
    guard let key = keys.first else { throw .noKey }
    guard let combined = try? AES.GCM.seal(plaintext, using: SymmetricKey(data: key.bytes)).combined else {
      throw .malformed
    }
    return "\(Self.sealedPrefix)\(key.id):\(combined.base64EncodedString())"
  }

  /// The id of the key that sealed `sealed` (nil when it is not a sealed value).
  package static func keyID(of sealed: String) -> Substring? {
    guard sealed.hasPrefix(sealedPrefix) else { return nil }
    let rest = sealed.dropFirst(sealedPrefix.count)
    return rest.firstIndex(of: ":").map { rest[..<$0] }
  }

  /// Whether `sealed` was sealed with the first key, the one that seals now (else sealing it
  /// again moves it off a key that is being retired).
  package func isSealedWithFirstKey(_ sealed: String) -> Bool {
    guard let first = keys.first, let id = Self.keyID(of: sealed) else { return false }
    return id == first.id
  }

  package func open(_ sealed: String) throws(Failure) -> Data {
    let parts = sealed.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == "sealed", parts[1] == "v1", let combined = Data(base64Encoded: String(parts[3])) else {
      throw .malformed
    }
    let id = String(parts[2])
    guard let key = keys.first(where: { $0.id == id }) else { throw keys.isEmpty ? .noKey : .unknownKey(id) }
    guard let box = try? AES.GCM.SealedBox(combined: combined),
      let plaintext = try? AES.GCM.open(box, using: SymmetricKey(data: key.bytes))
    else { throw .tampered(id) }
    return plaintext
  }
}
