import HeraldPostgres
import Logging
import PostgresNIO

/// Every SQL statement of the rate-limit service, on its own `ratelimit` schema, by area: the
/// limits the API and the limits file write and every replica re-reads
/// (`RateLimitStore+Limits.swift`), the hour and day counters their owner saves and the next owner
/// reads (`+Counters`), and the members table each replica heartbeats in (`+Members`). Counters
/// live in memory (`RateLimiter`): a decision reads the database only the first time it touches an
/// hour or day counter on this replica.
package struct RateLimitStore: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }
}
