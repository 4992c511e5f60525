import Crypto
import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// An API key as stored (its hash, never the key).
struct APIKeyRecord: Sendable, Equatable {
  var id: UUID
  var name: String
  var prefix: String
  var scopes: [String]
  var createdAt: Date
  var lastUsedAt: Date?
  var revokedAt: Date?
}

/// Every SQL statement of the gateway, on its own `gateway` schema: API keys (stored as SHA-256
/// hashes; keys are 192-bit random tokens, so an unsalted hash cannot be reversed by search) and
/// idempotency keys (`GatewayStore+Idempotency.swift`).
struct GatewayStore: Sendable {
  static let keyPrefix = "hrld_"
  let client: PostgresClient
  let logger: Logger

  static func hash(_ key: String) -> String {
    SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
  }

  static func generateKey() -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    var generator = SystemRandomNumberGenerator()
    return keyPrefix + String((0..<32).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
  }

  func createKey(name: String, scopes: [String], key: String = GatewayStore.generateKey()) async throws -> (APIKeyRecord, String) {
    let rows = try await client.query(
      """
      INSERT INTO gateway.api_keys (name, prefix, key_hash, scopes)
      VALUES (\(name), \(String(key.prefix(12))), \(Self.hash(key)), \(scopes))
      RETURNING id, name, prefix, scopes, created_at, last_used_at, revoked_at
      """, logger: logger)
    guard let record = try await Self.records(rows).first else { throw PostgresError.protocol("INSERT gave no row") }
    return (record, key)
  }

  /// The key's holder, noting its use; nil for an unknown or revoked key.
  func authenticate(_ key: String) async throws -> APIKeyPrincipal? {
    // Generated keys are 37 characters; a configured admin key 20 to 200.
    guard (20...200).contains(key.count) else { return nil }
    let rows = try await client.query(
      """
      UPDATE gateway.api_keys SET last_used_at = now()
      WHERE key_hash = \(Self.hash(key)) AND revoked_at IS NULL
      RETURNING id, name, scopes
      """, logger: logger)
    guard let (id, name, scopes) = try await rows.collect().first?.decode((UUID, String, [String]).self) else { return nil }
    return APIKeyPrincipal(id: id, name: name, scopes: Set(scopes))
  }

  func keys() async throws -> [APIKeyRecord] {
    try await Self.records(
      client.query(
        "SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at FROM gateway.api_keys ORDER BY created_at, id",
        logger: logger))
  }

  /// False when no active key has that id.
  func revokeKey(id: UUID) async throws -> Bool {
    let rows = try await client.query(
      "UPDATE gateway.api_keys SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL RETURNING id", logger: logger)
    return try await rows.collect().count == 1
  }

  /// Makes sure an admin key exists. With a configured key, stores it (hashed) if new. Without one,
  /// creates a key only when no active admin key exists, and returns it so it is shown once.
  func bootstrapAdminKey(configuredKey: String?) async throws -> String? {
    let logger = self.logger
    return try await client.withTransaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock(hashtext('herald.gateway.bootstrap-key'))", logger: logger)
      if let configuredKey {
        try await connection.query(
          """
          INSERT INTO gateway.api_keys (name, prefix, key_hash, scopes)
          VALUES ('bootstrap admin (HERALD_ADMIN_API_KEY)', \(String(configuredKey.prefix(12))), \(Self.hash(configuredKey)), ARRAY['admin'])
          ON CONFLICT (key_hash) DO NOTHING
          """, logger: logger)
        return nil
      }
      let admins =
        try await connection.query(
          "SELECT count(*) FROM gateway.api_keys WHERE 'admin' = ANY(scopes) AND revoked_at IS NULL", logger: logger
        ).collect().first?.decode(Int.self) ?? 0
      guard admins == 0 else { return nil }
      let key = Self.generateKey()
      try await connection.query(
        """
        INSERT INTO gateway.api_keys (name, prefix, key_hash, scopes)
        VALUES ('bootstrap admin (generated)', \(String(key.prefix(12))), \(Self.hash(key)), ARRAY['admin'])
        """, logger: logger)
      return key
    }
  }

  static func records(_ rows: PostgresRowSequence) async throws -> [APIKeyRecord] {
    var records: [APIKeyRecord] = []
    for try await (id, name, prefix, scopes, createdAt, lastUsedAt, revokedAt) in rows.decode(
      (UUID, String, String, [String], Date, Date?, Date?).self)
    {
      records.append(
        APIKeyRecord(
          id: id, name: name, prefix: prefix, scopes: scopes, createdAt: createdAt, lastUsedAt: lastUsedAt, revokedAt: revokedAt))
    }
    return records
  }
}
