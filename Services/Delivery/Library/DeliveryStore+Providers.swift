import Foundation
import HeraldCore
import HeraldPostgres
import HeraldProtos
import Logging
import PostgresNIO
import SwiftProtobuf

/// The providers table, `delivery.providers`: each provider's definition as protobuf JSON
/// (`herald.delivery.v1.Provider`, secrets included), which every replica's `ProviderRegistry`
/// loads.
extension DeliveryStore {
  /// Every stored provider that this version can use, by channel, priority and name. A row that
  /// does not validate is logged and left out (not silently dropped from the answer).
  package func providers() async throws -> [ProviderConfig] {
    var configs: [ProviderConfig] = []
    for try await (name, json) in try await client.query(
      "SELECT name, definition::text FROM delivery.providers ORDER BY channel, priority, name", logger: logger
    ).decode((String, String).self) {
      do {
        let provider = try Herald_Delivery_V1_Provider(jsonString: json)
        configs.append(try ProviderConfig(validating: provider))
      } catch {
        logger.error("stored provider is not valid and is left out", metadata: ["provider": "\(name)", "error": "\(error.logDescription)"])
      }
    }
    return configs
  }

  /// Creates or replaces the provider named `name` with what `make` builds from the definition
  /// stored under that name (nil when there is none), in one transaction that holds the stored
  /// row: what `make` keeps of it (its secrets) is what the write replaces. An error of `make` is
  /// thrown as it is, and nothing is written.
  @discardableResult
  package func putProvider(
    named name: String, _ make: @escaping @Sendable (_ stored: Herald_Delivery_V1_Provider?) throws -> ProviderConfig
  ) async throws -> ProviderConfig {
    try await transaction { connection in
      let stored = try await connection.query(
        "SELECT definition::text FROM delivery.providers WHERE name = \(name) FOR UPDATE", logger: logger
      ).decode(String.self).elements().first
      let previous: Herald_Delivery_V1_Provider?
      do {
        previous = try stored.map { try Herald_Delivery_V1_Provider(jsonString: $0) }
      } catch {
        // A row this version cannot read keeps nothing; a new definition replaces it.
        logger.warning(
          "stored provider cannot be read; it is replaced", metadata: ["provider": "\(name)", "error": "\(error.logDescription)"])
        previous = nil
      }
      let config = try make(previous)
      let json = try config.definition.jsonString()
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

  /// Whether a provider had the name (and no longer does).
  package func deleteProvider(named name: String) async throws -> Bool {
    try await client.query("DELETE FROM delivery.providers WHERE name = \(name) RETURNING 1", logger: logger).collect().count > 0
  }
}
