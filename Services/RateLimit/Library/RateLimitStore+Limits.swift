import Foundation
import HeraldPostgres
import PostgresNIO

/// `ratelimit.limits`: one row per limit, by its canonical key (`domain=*,provider=smtp`).
extension RateLimitStore {
  /// Creates or replaces the limit of the same key; returns it as stored (with `updatedAt`).
  package func putLimit(_ limit: LimitDefinition) async throws -> LimitDefinition {
    let rows = try await client.query(
      """
      INSERT INTO ratelimit.limits (key, requests_per_unit, unit, algorithm, burst, warmup_start, warmup_volumes)
      VALUES (\(limit.key), \(limit.requestsPerUnit), \(limit.unit.rawValue), \(limit.algorithm.rawValue), \(limit.burst),
        \(limit.warmup.map { Date(timeIntervalSince1970: $0.start) }), \(limit.warmup?.dailyVolumes))
      ON CONFLICT (key) DO UPDATE SET
        requests_per_unit = EXCLUDED.requests_per_unit, unit = EXCLUDED.unit, algorithm = EXCLUDED.algorithm,
        burst = EXCLUDED.burst, warmup_start = EXCLUDED.warmup_start, warmup_volumes = EXCLUDED.warmup_volumes,
        updated_at = now()
      RETURNING \(unescaped: Self.limitColumns)
      """, logger: logger)
    guard let stored = try await Self.decodeLimits(rows).first else {
      throw PostgresError.protocol("INSERT ... RETURNING gave no row")
    }
    return stored
  }

  /// Every limit, by key.
  package func limits() async throws -> [LimitDefinition] {
    try await Self.decodeLimits(
      client.query("SELECT \(unescaped: Self.limitColumns) FROM ratelimit.limits ORDER BY key", logger: logger))
  }

  /// Removes the limit and its saved counters; false when there was no such limit.
  package func deleteLimit(key: String) async throws -> Bool {
    let rows = try await client.query(
      """
      WITH gone AS (DELETE FROM ratelimit.limits WHERE key = \(key) RETURNING key),
      counters AS (DELETE FROM ratelimit.counters WHERE limit_key IN (SELECT key FROM gone))
      SELECT count(*)::int FROM gone
      """, logger: logger)
    return try await rows.decode(Int.self).elements().first == 1
  }

  static let limitColumns = "key, requests_per_unit, unit, algorithm, burst, warmup_start, warmup_volumes, updated_at"

  static func decodeLimits(_ rows: PostgresRowSequence) async throws -> [LimitDefinition] {
    var limits: [LimitDefinition] = []
    for try await (key, requests, unit, algorithm, burst, warmupStart, warmupVolumes, updatedAt) in rows.decode(
      (String, Int64, String, String, Int64, Date?, [Int64]?, Date).self)
    {
      guard let unit = LimitDefinition.Unit(rawValue: unit), let algorithm = LimitDefinition.Algorithm(rawValue: algorithm)
      else { throw PostgresError.protocol("ratelimit.limits row '\(key)' has unit '\(unit)' or algorithm '\(algorithm)'") }
      let warmup = warmupStart.map { LimitDefinition.Warmup(start: $0.timeIntervalSince1970, dailyVolumes: warmupVolumes ?? [0]) }
      limits.append(
        LimitDefinition(
          descriptors: LimitDefinition.descriptors(fromKey: key), requestsPerUnit: requests, unit: unit,
          algorithm: algorithm, burst: burst, warmup: warmup, updatedAt: updatedAt))
    }
    return limits
  }
}
