import Crypto
import Foundation
import _CryptoExtras

/// A DKIM signing key of a sending domain (RFC 6376; RFC 8463 for Ed25519), ready to sign.
package struct DKIMKey: Sendable {
  package enum Algorithm: String, Sendable, CaseIterable {
    case rsaSHA256 = "rsa-sha256"
    case ed25519SHA256 = "ed25519-sha256"

    /// The DNS record's `k=`.
    var keyType: String { self == .rsaSHA256 ? "rsa" : "ed25519" }
  }

  enum Signer: Sendable {
    case rsa(_RSA.Signing.PrivateKey)
    /// The 32-byte seed (swift-crypto's Ed25519 key type is not Sendable; making one from the
    /// seed is cheap).
    case ed25519(Data)
  }

  package let domain: String
  package let selector: String
  package let algorithm: Algorithm
  let signer: Signer

  /// A key from its stored private bytes (RSA: DER; Ed25519: the 32-byte seed).
  package init(domain: String, selector: String, algorithm: Algorithm, privateKey: Data) throws {
    self.domain = domain
    self.selector = selector
    self.algorithm = algorithm
    switch algorithm {
    case .rsaSHA256: signer = .rsa(try _RSA.Signing.PrivateKey(derRepresentation: privateKey))
    case .ed25519SHA256:
      signer = .ed25519(try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey).rawRepresentation)
    }
  }

  /// A new key (RSA-2048 or Ed25519) with the private bytes to store.
  package static func generate(domain: String, selector: String, algorithm: Algorithm) throws -> (key: DKIMKey, privateKey: Data) {
    let privateKey: Data =
      switch algorithm {
      case .rsaSHA256: try _RSA.Signing.PrivateKey(keySize: .bits2048).derRepresentation
      case .ed25519SHA256: Curve25519.Signing.PrivateKey().rawRepresentation
      }
    return (try DKIMKey(domain: domain, selector: selector, algorithm: algorithm, privateKey: privateKey), privateKey)
  }

  /// The `p=` value: base64 of the SubjectPublicKeyInfo (RSA) or of the raw 32 bytes (Ed25519).
  package var publicKey: String {
    switch signer {
    case .rsa(let key): key.publicKey.derRepresentation.base64EncodedString()
    case .ed25519(let seed):
      (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed))?.publicKey.rawRepresentation.base64EncodedString() ?? ""
    }
  }

  /// Where the record is published.
  package var dnsName: String { "\(selector)._domainkey.\(domain)" }

  /// The TXT record's value.
  package static func dnsRecord(algorithm: Algorithm, publicKey: String) -> String {
    "v=DKIM1; k=\(algorithm.keyType); p=\(publicKey)"
  }

  func sign(_ data: [UInt8]) throws -> Data {
    switch signer {
    case .rsa(let key): try key.signature(for: data, padding: .insecurePKCS1v1_5).rawRepresentation
    // RFC 8463 §3: Ed25519 (PureEdDSA) over the SHA-256 hash of the data.
    case .ed25519(let seed): try Curve25519.Signing.PrivateKey(rawRepresentation: seed).signature(for: Data(SHA256.hash(data: data)))
    }
  }
}

/// DKIM signatures with relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4).
enum DKIMSigner {
  /// Header fields signed when present, in this order; each is signed once more than it occurs
  /// (over-signed, RFC 6376 §8.15), so that none can be added on the way without breaking the
  /// signature.
  static let signedFields = [
    "From", "Reply-To", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "List-Unsubscribe", "List-Unsubscribe-Post",
  ]

  /// One `DKIM-Signature` header line (folded, CRLF-separated, without the final CRLF) per key, for
  /// a message of `headers` (name and the value after the colon, as written, folding included)
  /// and `body` (the bytes after the blank line).
  /// `lifetime`, when given, sets `x=` (RFC 6376 §3.5): verifiers treat the signature as expired
  /// that long after `t=`.
  static func signatures(
    headers: [(name: String, value: String)], body: [UInt8], keys: [DKIMKey], time: Date, lifetime: Duration? = nil
  ) throws -> [String] {
    guard !keys.isEmpty else { return [] }
    let bodyHash = Data(SHA256.hash(data: canonicalBody(body))).base64EncodedString()
    var names: [String] = []
    var signedHeaders: [UInt8] = []
    for field in signedFields {
      // A field that occurs once (Herald writes each once); the last occurrence is the one signed.
      guard let header = headers.last(where: { $0.name.caseInsensitiveCompare(field) == .orderedSame }) else { continue }
      names.append(field.lowercased())
      signedHeaders += canonicalHeader(header.name, header.value) + [0x0D, 0x0A]
    }
    names += names
    // h= on lines of at most 72 characters, broken after a colon (FWS is allowed there).
    var foldedNames = ""
    var lineLength = 3
    for (index, name) in names.enumerated() {
      let piece = index == names.count - 1 ? name : name + ":"
      if lineLength + piece.count > 72 {
        foldedNames += "\r\n\t "
        lineLength = 2
      }
      foldedNames += piece
      lineLength += piece.count
    }
    let timestamp = Int(time.timeIntervalSince1970)
    let expiry = lifetime.map { " x=\(timestamp + Int($0.components.seconds));" } ?? ""
    return try keys.map { key in
      let value =
        " v=1; a=\(key.algorithm.rawValue); c=relaxed/relaxed;\r\n\td=\(key.domain); s=\(key.selector); t=\(timestamp);\(expiry)\r\n\t"
        + "h=\(foldedNames);\r\n\tbh=\(bodyHash);\r\n\tb="
      // The signature covers the signed headers and this header with an empty b=, without its
      // final CRLF.
      let signature = try key.sign(signedHeaders + canonicalHeader("DKIM-Signature", value))
      return "DKIM-Signature:" + value + fold(signature.base64EncodedString())
    }
  }

  /// Base64 in pieces of 72 characters on continuation lines (folding white space inside b= is
  /// ignored by verifiers).
  static func fold(_ text: String) -> String {
    var pieces: [Substring] = []
    var rest = Substring(text)
    while !rest.isEmpty {
      pieces.append(rest.prefix(72))
      rest = rest.dropFirst(72)
    }
    return pieces.joined(separator: "\r\n\t")
  }

  /// Relaxed header canonicalization: the name lower-cased, the value unfolded, runs of white
  /// space as one space, none at either end; `name:value`.
  static func canonicalHeader(_ name: String, _ value: String) -> [UInt8] {
    var out = Array(name.lowercased().trimmingCharacters(in: .whitespaces).utf8)
    out.append(UInt8(ascii: ":"))
    var pendingSpace = false
    var started = false
    for byte in value.utf8 {
      switch byte {
      case 0x0D, 0x0A: continue
      case 0x20, 0x09: pendingSpace = started
      default:
        if pendingSpace { out.append(0x20) }
        pendingSpace = false
        started = true
        out.append(byte)
      }
    }
    return out
  }

  /// Relaxed body canonicalization: white space at line ends removed, runs of it inside a line
  /// as one space, empty lines at the end removed, a non-empty body ending in CRLF.
  static func canonicalBody(_ body: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(body.count)
    var pendingEmptyLines = 0
    var line: [UInt8] = []
    var pendingSpace = false
    func endLine() {
      if line.isEmpty {
        pendingEmptyLines += 1
      } else {
        for _ in 0..<pendingEmptyLines { out += [0x0D, 0x0A] }
        pendingEmptyLines = 0
        out += line
        out += [0x0D, 0x0A]
      }
      line.removeAll(keepingCapacity: true)
      pendingSpace = false
    }
    var index = 0
    while index < body.count {
      let byte = body[index]
      if byte == 0x0D, index + 1 < body.count, body[index + 1] == 0x0A {
        endLine()
        index += 2
        continue
      }
      if byte == 0x20 || byte == 0x09 {
        pendingSpace = true
      } else {
        if pendingSpace { line.append(0x20) }
        pendingSpace = false
        line.append(byte)
      }
      index += 1
    }
    if !line.isEmpty { endLine() }
    return out
  }
}
