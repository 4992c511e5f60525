import Foundation
import HeraldServerKit
import Logging
import Synchronization

/// The DKIM keys of this process by domain, reloaded with the providers (a key created or
/// deleted through the API reaches every replica within a refresh). A stored key is opened and
/// parsed once, not at every reload.
package final class DKIMKeyring: Sendable {
  private struct Loaded: Sendable {
    var sealed: String
    var key: DKIMKey
  }

  /// By domain, then selector.
  private let loaded = Mutex<[String: [String: Loaded]]>([:])
  /// By domain, in selector order: what a message is signed with (sorted once per reload).
  private let signing = Mutex<[String: [DKIMKey]]>([:])

  /// How long a signature is valid (`x=`); nil: no expiry.
  package let signatureLifetime: Duration?

  package init(signatureLifetime: Duration? = nil) {
    self.signatureLifetime = signatureLifetime
  }

  /// The keys to sign mail from `domain` with, in selector order.
  package func keys(for domain: String) -> [DKIMKey] {
    signing.withLock { $0[domain] ?? [] }
  }

  /// Takes the stored keys as the current set. A key that does not open (HERALD_SECRETS_KEY
  /// missing or without the key that sealed it) is left out and logged: mail from its domain goes
  /// out without that signature until it is fixed.
  package func reload(_ stored: [StoredDKIMKey], secrets: SecretBox, logger: Logger) {
    let previous = loaded.withLock { $0 }
    var next: [String: [String: Loaded]] = [:]
    for record in stored {
      if let known = previous[record.domain]?[record.selector], known.sealed == record.sealedPrivateKey {
        next[record.domain, default: [:]][record.selector] = known
        continue
      }
      do {
        let key = try DKIMKey(
          domain: record.domain, selector: record.selector, algorithm: record.algorithm,
          privateKey: try secrets.open(record.sealedPrivateKey))
        next[record.domain, default: [:]][record.selector] = Loaded(sealed: record.sealedPrivateKey, key: key)
      } catch {
        logger.error(
          "a DKIM key could not be opened; mail from its domain is not signed with it",
          metadata: ["domain": "\(record.domain)", "selector": "\(record.selector)", "error": "\(error)"])
      }
    }
    loaded.withLock { $0 = next }
    signing.withLock { $0 = next.mapValues { $0.sorted { $0.key < $1.key }.map(\.value.key) } }
  }
}
