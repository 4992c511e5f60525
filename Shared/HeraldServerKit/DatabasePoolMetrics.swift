import Logging
import PostgresNIO

/// The process's PostgreSQL connections as the server sees them: each process connects under its
/// own `application_name` (`DatabaseConfiguration.applicationName`), so `pg_stat_activity` tells
/// how many of its pool's connections are open and what they are doing.
package enum DatabasePoolMetrics {
  /// The collector under its name, as a `MetricsEndpoint` takes it.
  package static func named(
    database: PostgresClient, applicationName: String, maximum: Int, logger: Logger
  ) -> (String, MetricsEndpoint.Collector) {
    ("database_pool", collector(database: database, applicationName: applicationName, maximum: maximum, logger: logger))
  }

  package static func collector(
    database: PostgresClient, applicationName: String, maximum: Int, logger: Logger
  ) -> MetricsEndpoint.Collector {
    { scrape in
      var counts: [String: Int64] = ["active": 0, "idle": 0, "idle in transaction": 0]
      let rows = try await database.query(
        """
        SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
        WHERE application_name = \(applicationName) GROUP BY 1
        """, logger: logger)
      for try await (state, count) in rows.decode((String, Int64).self) { counts[state] = count }
      for (state, count) in counts {
        scrape.gauge(
          "herald_db_connections", [("state", state)],
          help: "Connections of this process's database pool, by state (pg_stat_activity)", count)
      }
      scrape.gauge(
        "herald_db_pool_max_connections", help: "The most connections this process's pool opens (HERALD_DATABASE_POOL_SIZE)",
        Int64(maximum))
    }
  }
}
