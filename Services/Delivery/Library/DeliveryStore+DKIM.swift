import Foundation
import HeraldPostgres
import PostgresNIO

/// A DKIM key as `delivery.dkim_keys` holds it: the private key sealed (`SecretBox`).
package struct StoredDKIMKey: Sendable, Equatable {
  package var domain: String
  package var selector: String
  package var algorithm: DKIMKey.Algorithm
  package var sealedPrivateKey: String
  package var publicKey: String
  package var createdAt: Date
}

/// DKIM keys per sending domain.
extension DeliveryStore {
  /// Stores a new key; nil when the domain already has the selector.
  package func createDKIMKey(
    domain: String, selector: String, algorithm: DKIMKey.Algorithm, sealedPrivateKey: String, publicKey: String
  ) async throws -> Date? {
    try await client.query(
      """
      INSERT INTO delivery.dkim_keys (domain, selector, algorithm, private_key, public_key)
      VALUES (\(domain), \(selector), \(algorithm.rawValue), \(sealedPrivateKey), \(publicKey))
      ON CONFLICT (domain, selector) DO NOTHING
      RETURNING created_at
      """, logger: logger
    ).decode(Date.self).elements().first
  }

  /// Every key, or one domain's, by domain and selector.
  package func dkimKeys(domain: String? = nil) async throws -> [StoredDKIMKey] {
    let rows = try await client.query(
      """
      SELECT domain, selector, algorithm, private_key, public_key, created_at FROM delivery.dkim_keys
      WHERE \(domain ?? "") = '' OR domain = \(domain ?? "")
      ORDER BY domain, selector
      """, logger: logger)
    var keys: [StoredDKIMKey] = []
    for try await (domain, selector, algorithm, sealed, publicKey, createdAt) in rows.decode(
      (String, String, String, String, String, Date).self)
    {
      guard let algorithm = DKIMKey.Algorithm(rawValue: algorithm) else { continue }
      keys.append(
        StoredDKIMKey(
          domain: domain, selector: selector, algorithm: algorithm, sealedPrivateKey: sealed, publicKey: publicKey,
          createdAt: createdAt))
    }
    return keys
  }

  /// Whether a key was deleted.
  package func deleteDKIMKey(domain: String, selector: String) async throws -> Bool {
    try await client.query(
      "DELETE FROM delivery.dkim_keys WHERE domain = \(domain) AND selector = \(selector) RETURNING 1", logger: logger
    ).decode(Int.self).elements().count == 1
  }
}
