import Foundation
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import SwiftProtobuf

/// The providers table, `delivery.providers`: each provider's definition as protobuf JSON
/// (`herald.delivery.v1.Provider`, its secrets sealed: `ProviderSecrets.swift`), which every
/// replica's `ProviderRegistry` loads.
extension DeliveryStore {
  /// Every stored provider that this version can use, by channel, priority and name, its secrets
  /// opened with `secrets`. A row that does not validate or whose secrets do not open is logged
  /// and left out (not silently dropped from the answer).
  package func providers(opening secrets: SecretBox) async throws -> [ProviderConfig] {
    var configs: [ProviderConfig] = []
    for try await (name, json) in try await client.query(
      "SELECT name, definition::text FROM delivery.providers ORDER BY channel, priority, name", logger: logger
    ).decode((String, String).self) {
      do {
        let provider = try ProviderConfig.openingSecrets(of: Herald_Delivery_V1_Provider(jsonString: json), with: secrets)
        configs.append(try ProviderConfig(validating: provider))
      } catch {
        logger.error("stored provider is not valid and is left out", metadata: ["provider": "\(name)", "error": "\(error.logDescription)"])
      }
    }
    return configs
  }

  /// Creates or replaces the provider named `name` with what `make` builds from the definition
  /// stored under that name (nil when there is none; its secrets opened), in one transaction that
  /// holds the stored row: what `make` keeps of it (its secrets) is what the write replaces. The
  /// secrets are stored sealed with `secrets` (FAILED_PRECONDITION without a key), unless
  /// `keepingClear` and the stored row still holds secrets in clear: then they stay in clear until
  /// `sealSecrets` (the providers file, applied at every start, must not seal what the older
  /// replicas of a roll-out still read). An error of `make` is thrown as it is, and nothing is
  /// written.
  @discardableResult
  package func putProvider(
    named name: String, sealingWith secrets: SecretBox, keepingClear: Bool = false,
    _ make: @escaping @Sendable (_ stored: Herald_Delivery_V1_Provider?) throws -> ProviderConfig
  ) async throws -> ProviderConfig {
    try await transaction { connection in
      let stored = try await connection.query(
        "SELECT definition::text FROM delivery.providers WHERE name = \(name) FOR UPDATE", logger: logger
      ).decode(String.self).elements().first
      let previous: Herald_Delivery_V1_Provider?
      var storedInClear = false
      do {
        let parsed = try stored.map { try Herald_Delivery_V1_Provider(jsonString: $0) }
        storedInClear = parsed.map(ProviderConfig.hasSecretInClear) ?? false
        previous = try parsed.map { try ProviderConfig.openingSecrets(of: $0, with: secrets) }
      } catch {
        // A row this version cannot read keeps nothing; a new definition replaces it.
        logger.warning(
          "stored provider cannot be read; it is replaced", metadata: ["provider": "\(name)", "error": "\(error.logDescription)"])
        previous = nil
      }
      let config = try make(previous)
      let json = try (keepingClear && storedInClear ? config.definition : config.sealedDefinition(secrets)).jsonString()
      try await connection.query(
        """
        INSERT INTO delivery.providers (name, channel, priority, definition)
        VALUES (\(config.name), \(config.channel), \(config.priority), \(json)::jsonb)
        ON CONFLICT (name) DO UPDATE SET channel = EXCLUDED.channel, priority = EXCLUDED.priority,
          definition = EXCLUDED.definition, updated_at = now()
        """, logger: logger)
      return config
    }
  }

  /// The providers whose secrets `sealSecrets` would seal, by name.
  package func providersNeedingSealing(_ secrets: SecretBox) async throws -> [String] {
    try await client.query("SELECT name, definition::text FROM delivery.providers ORDER BY name", logger: logger)
      .decode((String, String).self).elements()
      .filter { (_, json) in
        (try? Herald_Delivery_V1_Provider(jsonString: json)).map { ProviderConfig.needsSealing($0, with: secrets) } ?? false
      }
      .map(\.0)
  }

  /// Seals every provider secret stored in clear, and seals again those sealed with a key that is
  /// no longer the first (so that an old key can be retired); the same for the DKIM private keys.
  /// Each row is replaced only if it is still what was read (compare and swap), so that a
  /// provider put meanwhile is not overwritten (it is reported: run again). A row whose secrets
  /// do not open is left as it is and reported.
  package func sealSecrets(_ secrets: SecretBox) async throws -> SecretSealing {
    var result = SecretSealing()
    let rows = try await client.query("SELECT name, definition::text FROM delivery.providers ORDER BY name", logger: logger)
      .decode((String, String).self).elements()
    for (name, json) in rows {
      let sealed: String
      do {
        let stored = try Herald_Delivery_V1_Provider(jsonString: json)
        guard ProviderConfig.needsSealing(stored, with: secrets) else {
          result.unchanged += 1
          continue
        }
        sealed = try ProviderConfig.sealingSecrets(of: ProviderConfig.openingSecrets(of: stored, with: secrets), with: secrets)
          .jsonString()
      } catch {
        result.failures.append("provider '\(name)': \(error)")
        continue
      }
      let swapped = try await client.query(
        """
        UPDATE delivery.providers SET definition = \(sealed)::jsonb, updated_at = now()
        WHERE name = \(name) AND definition = \(json)::jsonb RETURNING 1
        """, logger: logger
      ).decode(Int.self).elements().count
      if swapped == 1 {
        result.providers += 1
      } else {
        result.failures.append("provider '\(name)': it changed while it was being sealed; run again")
      }
    }
    for key in try await dkimKeys() where !secrets.isSealedWithFirstKey(key.sealedPrivateKey) {
      do {
        let sealed = try secrets.seal(try secrets.open(key.sealedPrivateKey))
        result.dkimKeys += try await client.query(
          """
          UPDATE delivery.dkim_keys SET private_key = \(sealed)
          WHERE domain = \(key.domain) AND selector = \(key.selector) AND private_key = \(key.sealedPrivateKey) RETURNING 1
          """, logger: logger
        ).decode(Int.self).elements().count
      } catch let failure as SecretBox.Failure {
        result.failures.append("DKIM key \(key.selector)._domainkey.\(key.domain): \(failure)")
      }
    }
    return result
  }

  /// Whether a provider had the name (and no longer does).
  package func deleteProvider(named name: String) async throws -> Bool {
    try await client.query("DELETE FROM delivery.providers WHERE name = \(name) RETURNING 1", logger: logger).collect().count > 0
  }
}

/// What `sealSecrets` did.
package struct SecretSealing: Sendable, Equatable {
  /// Providers whose secrets were sealed (from clear, or from a key being retired).
  package var providers = 0
  /// DKIM private keys sealed again with the first key.
  package var dkimKeys = 0
  /// Providers already sealed with the first key (or without secrets).
  package var unchanged = 0
  /// What could not be sealed, each naming its row and why; those rows are left as they were.
  package var failures: [String] = []
}
