import Foundation
import NIOCore
import PostgresNIO

/// A stored first answer of an `Idempotency-Key`.
struct IdempotentAnswer: Sendable {
  var requestHash: String
  /// nil while the first request is still running.
  var status: Int?
  var contentType: String?
  var body: ByteBuffer?
}

extension GatewayStore {
  /// The lifetime of an idempotency key.
  static let idempotencyLifetime = "24 hours"

  /// Claims `key` for this request (an expired claim of the same key is taken over, in the same
  /// statement); false when the key is taken, by this request or another one.
  func claimIdempotencyKey(_ key: String, apiKey: UUID, method: String, path: String, hash: String) async throws -> Bool {
    try await client.query(
      """
      INSERT INTO gateway.idempotency_keys (api_key_id, key, method, path, request_hash)
      VALUES (\(apiKey), \(key), \(method), \(path), \(hash))
      ON CONFLICT (api_key_id, key) DO UPDATE SET
        method = excluded.method, path = excluded.path, request_hash = excluded.request_hash,
        status = NULL, content_type = NULL, body = NULL, created_at = now()
      WHERE gateway.idempotency_keys.created_at < now() - \(Self.idempotencyLifetime)::interval
      RETURNING 1
      """, logger: logger
    ).collect().count == 1
  }

  func idempotentAnswer(_ key: String, apiKey: UUID) async throws -> IdempotentAnswer? {
    let rows = try await client.query(
      """
      SELECT request_hash, status, content_type, body FROM gateway.idempotency_keys
      WHERE api_key_id = \(apiKey) AND key = \(key)
      """, logger: logger
    ).collect()
    guard let row = rows.first else { return nil }
    let (hash, status, contentType, body) = try row.decode((String, Int?, String?, ByteBuffer?).self)
    return IdempotentAnswer(requestHash: hash, status: status, contentType: contentType, body: body)
  }

  func saveIdempotentAnswer(_ key: String, apiKey: UUID, status: Int, contentType: String?, body: ByteBuffer) async throws {
    try await client.query(
      """
      UPDATE gateway.idempotency_keys SET status = \(status), content_type = \(contentType), body = \(body)
      WHERE api_key_id = \(apiKey) AND key = \(key)
      """, logger: logger)
  }

  /// Forgets a claimed key whose request failed, so that it can be retried.
  func releaseIdempotencyKey(_ key: String, apiKey: UUID) async throws {
    try await client.query(
      "DELETE FROM gateway.idempotency_keys WHERE api_key_id = \(apiKey) AND key = \(key) AND status IS NULL",
      logger: logger)
  }
}
