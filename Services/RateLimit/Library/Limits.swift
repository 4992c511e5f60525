import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// A limit over a set of descriptors, e.g. `domain=gmail.com,provider=smtp-primary`.
package struct LimitDefinition: Sendable, Equatable {
  package enum Unit: String, Sendable, CaseIterable { case second, minute, hour, day }
  package enum Algorithm: String, Sendable, CaseIterable {
    case tokenBucket = "token_bucket"
    case slidingWindow = "sliding_window"
  }

  /// Descriptors sorted by key; keys are unique.
  package var descriptors: [(key: String, value: String)]
  package var requestsPerUnit: Int64
  package var unit: Unit
  package var algorithm: Algorithm
  package var burst: Int64
  package var updatedAt: Date?

  package var key: String { Self.canonicalKey(descriptors) }

  package static func canonicalKey(_ descriptors: [(key: String, value: String)]) -> String {
    descriptors.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
  }

  /// Parses a canonical key back into descriptors (keys and values never hold `=` or `,`).
  package static func descriptors(fromKey key: String) -> [(key: String, value: String)] {
    key.split(separator: ",").map { pair in
      let parts = pair.split(separator: "=", maxSplits: 1)
      return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }
  }

  package static func == (lhs: Self, rhs: Self) -> Bool {
    lhs.key == rhs.key && lhs.requestsPerUnit == rhs.requestsPerUnit && lhs.unit == rhs.unit
      && lhs.algorithm == rhs.algorithm && lhs.burst == rhs.burst
  }
}

package protocol LimitStore: Sendable {
  func put(_ limit: LimitDefinition) async throws -> LimitDefinition
  func all() async throws -> [LimitDefinition]
}

package struct PostgresLimitStore: LimitStore {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  package func put(_ limit: LimitDefinition) async throws -> LimitDefinition {
    let rows = try await client.query(
      """
      INSERT INTO ratelimit.limits (key, requests_per_unit, unit, algorithm, burst)
      VALUES (\(limit.key), \(limit.requestsPerUnit), \(limit.unit.rawValue), \(limit.algorithm.rawValue), \(limit.burst))
      ON CONFLICT (key) DO UPDATE SET
        requests_per_unit = EXCLUDED.requests_per_unit, unit = EXCLUDED.unit, algorithm = EXCLUDED.algorithm,
        burst = EXCLUDED.burst, updated_at = now()
      RETURNING key, requests_per_unit, unit, algorithm, burst, updated_at
      """, logger: logger)
    guard let stored = try await Self.decode(rows).first else {
      throw PostgresError.protocol("INSERT ... RETURNING gave no row")
    }
    return stored
  }

  package func all() async throws -> [LimitDefinition] {
    try await Self.decode(
      client.query(
        "SELECT key, requests_per_unit, unit, algorithm, burst, updated_at FROM ratelimit.limits ORDER BY key",
        logger: logger))
  }

  static func decode(_ rows: PostgresRowSequence) async throws -> [LimitDefinition] {
    var limits: [LimitDefinition] = []
    for try await (key, requests, unit, algorithm, burst, updatedAt) in rows.decode(
      (String, Int64, String, String, Int64, Date).self)
    {
      guard let unit = LimitDefinition.Unit(rawValue: unit), let algorithm = LimitDefinition.Algorithm(rawValue: algorithm)
      else { throw PostgresError.protocol("ratelimit.limits row '\(key)' has unit '\(unit)' or algorithm '\(algorithm)'") }
      limits.append(
        LimitDefinition(
          descriptors: LimitDefinition.descriptors(fromKey: key), requestsPerUnit: requests, unit: unit,
          algorithm: algorithm, burst: burst, updatedAt: updatedAt))
    }
    return limits
  }
}
