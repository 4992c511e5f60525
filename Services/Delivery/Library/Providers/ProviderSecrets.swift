import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// Provider secrets at rest (SPEC §10): `delivery.providers` holds each secret sealed with
/// `HERALD_SECRETS_KEY` (`SecretBox`); a value stored in clear by a version before sealing still
/// opens, as it is, until `SealSecrets` seals it.
extension ProviderConfig {
  /// Whether a stored secret is a sealed value (else it was stored in clear).
  static func isSealed(_ value: String) -> Bool { value.hasPrefix(SecretBox.sealedPrefix) }

  /// The definition as it is stored: every secret that is set sealed with the first key.
  /// FAILED_PRECONDITION naming the variable when no key is configured and a secret is set.
  func sealedDefinition(_ secrets: SecretBox) throws(RPCError) -> Herald_Delivery_V1_Provider {
    do {
      return try Self.sealingSecrets(of: definition, with: secrets)
    } catch .noKey {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(SecretBox.variable) is not set: provider secrets are stored only encrypted (see docs/operations.md)")
    } catch {
      throw RPCError(code: .internalError, message: "a provider secret could not be sealed: \(error)")
    }
  }

  /// `provider` with every secret that is set sealed with the first key.
  static func sealingSecrets(
    of provider: Herald_Delivery_V1_Provider, with secrets: SecretBox
  ) throws(SecretBox.Failure) -> Herald_Delivery_V1_Provider {
    try mapSecrets(of: provider, stored: nil) { (value, _, _) throws(SecretBox.Failure) in
      value.isEmpty ? "" : try secrets.seal(Data(value.utf8))
    }
  }

  /// Whether a stored definition holds a secret in clear (written by a release before sealing,
  /// and not sealed since).
  static func hasSecretInClear(_ stored: Herald_Delivery_V1_Provider) -> Bool {
    var clear = false
    _ = mapSecrets(of: stored, stored: nil) { (value, _, _) throws(Never) in
      if !value.isEmpty, !isSealed(value) { clear = true }
      return value
    }
    return clear
  }

  /// A stored definition with its secrets opened: a sealed value with the key that sealed it, a
  /// value in clear as it is. Throws naming the field when a sealed value does not open.
  static func openingSecrets(
    of stored: Herald_Delivery_V1_Provider, with secrets: SecretBox
  ) throws(SecretOpeningError) -> Herald_Delivery_V1_Provider {
    try mapSecrets(of: stored, stored: nil) { (value, _, field) throws(SecretOpeningError) in
      guard isSealed(value) else { return value }
      do throws(SecretBox.Failure) {
        return String(decoding: try secrets.open(value), as: UTF8.self)
      } catch {
        throw SecretOpeningError(field: field, failure: error)
      }
    }
  }

  /// Whether a stored definition needs `SealSecrets`: a secret in clear, or sealed with a key
  /// that is not the first.
  static func needsSealing(_ stored: Herald_Delivery_V1_Provider, with secrets: SecretBox) -> Bool {
    var needs = false
    _ = mapSecrets(of: stored, stored: nil) { (value, _, _) throws(Never) in
      if !value.isEmpty, !isSealed(value) || !secrets.isSealedWithFirstKey(value) { needs = true }
      return value
    }
    return needs
  }
}

/// A stored secret that does not open (sealed with a key no longer configured, or changed).
package struct SecretOpeningError: Error, CustomStringConvertible {
  package var field: String
  package var failure: SecretBox.Failure
  package var description: String { "\(field): \(failure)" }
}
