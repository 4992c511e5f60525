import Foundation
import HeraldPostgres
import HeraldServerKit
import PostgresNIO

/// `ratelimit.members`: the live replicas. Each heartbeats its row; keys are spread over the rows
/// seen within the member TTL (`Membership`).
extension RateLimitStore {
  /// Registers or refreshes member `id` at `address`, forgets rows silent for an hour, and returns
  /// the members whose heartbeat is younger than `ttl` (this one included), by id.
  package func heartbeat(id: String, address: String, ttl: Duration) async throws -> [MemberInfo] {
    let ttlSeconds = ttl.milliseconds / 1000
    let rows = try await client.query(
      """
      WITH me AS (
        INSERT INTO ratelimit.members (id, address) VALUES (\(id), \(address))
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), address = EXCLUDED.address
        RETURNING id, address, started_at, heartbeat_at
      ), gone AS (
        DELETE FROM ratelimit.members WHERE heartbeat_at < now() - interval '1 hour'
      )
      SELECT id, address, started_at, heartbeat_at FROM me
      UNION
      SELECT id, address, started_at, heartbeat_at FROM ratelimit.members
      WHERE heartbeat_at > now() - make_interval(secs => \(ttlSeconds)) AND id <> \(id)
      ORDER BY id
      """, logger: logger)
    var members: [MemberInfo] = []
    for try await (id, address, startedAt, heartbeatAt) in rows.decode((String, String, Date, Date).self) {
      members.append(MemberInfo(id: id, address: address, startedAt: startedAt, heartbeatAt: heartbeatAt))
    }
    return members
  }

  /// Removes member `id` at once (a graceful shutdown), so that its keys move without waiting for
  /// the TTL.
  package func removeMember(id: String) async throws {
    try await client.query("DELETE FROM ratelimit.members WHERE id = \(id)", logger: logger)
  }
}
