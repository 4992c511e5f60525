import Logging
import PostgresNIO

extension PostgresClient {
  /// A transaction whose closure errors come back as thrown (not wrapped); database errors come
  /// back as `PostgresTransactionError`.
  package func transaction<T: Sendable>(
    logger: Logger, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
  ) async throws -> T {
    do {
      return try await withTransaction(logger: logger) { connection in try await body(connection) }
    } catch let error as PostgresTransactionError {
      if let closureError = error.closureError, closureError.postgresError == nil { throw closureError }
      throw error
    }
  }
}
