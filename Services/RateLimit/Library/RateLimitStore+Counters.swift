import HeraldPostgres
import PostgresNIO

/// `ratelimit.counters`: the hour and day counters (shorter ones live in memory only), written by
/// their owner a few times a second and read by the next owner, after a restart or when the key
/// moves to another replica.
extension RateLimitStore {
  /// The saved counters of `keys`; a key never saved is missing from the answer.
  package func counters(_ keys: [String]) async throws -> [String: CounterState] {
    guard !keys.isEmpty else { return [:] }
    var states: [String: CounterState] = [:]
    let rows = try await client.query(
      """
      SELECT key, tokens, updated, window_start, count, previous_count FROM ratelimit.counters WHERE key = ANY(\(keys))
      """, logger: logger)
    for try await (key, tokens, updated, windowStart, count, previous) in rows.decode((String, Double, Double, Double, Int64, Int64).self) {
      states[key] = CounterState(tokens: tokens, updated: updated, windowStart: windowStart, count: count, previousCount: previous)
    }
    return states
  }

  /// Saves counters in one statement.
  package func saveCounters(_ counters: [SavedCounter]) async throws {
    guard !counters.isEmpty else { return }
    try await client.query(
      """
      INSERT INTO ratelimit.counters (key, limit_key, tokens, updated, window_start, count, previous_count, saved_at)
      SELECT c.*, now() FROM unnest(\(counters.map(\.key)), \(counters.map(\.limitKey)), \(counters.map(\.state.tokens)),
        \(counters.map(\.state.updated)), \(counters.map(\.state.windowStart)), \(counters.map(\.state.count)),
        \(counters.map(\.state.previousCount))) AS c(key, limit_key, tokens, updated, window_start, count, previous_count)
      -- A limit deleted meanwhile (on another replica) takes its counters with it.
      WHERE EXISTS (SELECT 1 FROM ratelimit.limits l WHERE l.key = c.limit_key)
      ON CONFLICT (key) DO UPDATE SET
        limit_key = EXCLUDED.limit_key, tokens = EXCLUDED.tokens, updated = EXCLUDED.updated,
        window_start = EXCLUDED.window_start, count = EXCLUDED.count, previous_count = EXCLUDED.previous_count,
        saved_at = now()
      """, logger: logger)
  }
}
