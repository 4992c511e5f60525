import Crypto
import Foundation
import HeraldServerKit

/// `X-Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the scheme of both
/// Herald's outgoing webhooks and the provider webhooks it accepts (as Stripe's).
package enum WebhookSignature {
  package static func header(secret: String, timestamp: Int, body: Data) -> String {
    "t=\(timestamp),v1=\(hex(secret: secret, timestamp: timestamp, body: body))"
  }

  static func hex(secret: String, timestamp: Int, body: Data) -> String {
    var signed = Data("\(timestamp).".utf8)
    signed.append(body)
    let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
    return mac.map { String(format: "%02x", $0) }.joined()
  }

  package enum Problem: Error, Equatable, CustomStringConvertible {
    case missing, malformed, stale(seconds: Int), mismatch
    package var description: String {
      switch self {
      case .missing: "the X-Herald-Signature header is missing"
      case .malformed: "the X-Herald-Signature header is not of the form t=<unix seconds>,v1=<hex>"
      case .stale(let seconds): "the signature's timestamp is \(seconds) s away from now (at most 300 s allowed)"
      case .mismatch: "the signature does not match the body"
      }
    }
  }

  /// Checks a header against the body; the timestamp must be within five minutes of `now`.
  package static func verify(header: String, secret: String, body: Data, now: Date = Date()) throws(Problem) {
    guard !header.isEmpty else { throw .missing }
    var timestamp: Int?
    var signatures: [String] = []
    for part in header.split(separator: ",") {
      let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      guard pair.count == 2 else { throw .malformed }
      if pair[0] == "t" { timestamp = Int(pair[1]) } else if pair[0] == "v1" { signatures.append(pair[1].lowercased()) }
    }
    guard let timestamp, !signatures.isEmpty else { throw .malformed }
    let skew = abs(Int(now.timeIntervalSince1970) - timestamp)
    guard skew <= 300 else { throw .stale(seconds: skew) }
    let expected = Array(hex(secret: secret, timestamp: timestamp, body: body).utf8)
    let matches = signatures.contains { ConstantTime.equal($0.utf8, expected) }
    guard matches else { throw .mismatch }
  }
}
