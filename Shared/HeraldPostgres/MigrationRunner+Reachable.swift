import Foundation
import PostgresNIO

extension MigrationRunner {
  /// Applies migrations, retrying while the database is unreachable (up to `wait`). A ledger that
  /// diverges from this build is not retried: it stops the process.
  @discardableResult
  package func migrateWhenReachable(_ set: MigrationSet, client: PostgresClient, wait: Duration) async throws -> [Int] {
    let deadline = ContinuousClock.now.advanced(by: wait)
    while true {
      do {
        return try await migrate(set, client: client)
      } catch let error as MigrationError {
        throw error
      } catch  where ContinuousClock.now < deadline && !Task.isCancelled && !(error is CancellationError) {
        logger.warning("database not ready; retrying", metadata: ["error": "\(error.databaseMessage)"])
        try await Task.sleep(for: .seconds(1))
      }
    }
  }
}
