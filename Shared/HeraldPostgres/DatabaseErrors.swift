import Foundation
import PostgresNIO

extension Error {
  /// The server's error, also when it is wrapped in a transaction error.
  package var postgresError: PSQLError? {
    if let error = self as? PSQLError { return error }
    return (self as? PostgresTransactionError)?.closureError?.postgresError
  }

  /// The SQLSTATE of a PostgreSQL error (`23505` is a unique violation), if this is one.
  package var sqlState: String? {
    postgresError?.serverInfo?[.sqlState]
  }

  /// The constraint a PostgreSQL error names, if any.
  package var constraintName: String? {
    postgresError?.serverInfo?[.constraintName]
  }

  /// A description of a database error that keeps the server's message (PSQLError's own
  /// description is blank on purpose) without the query's bound values: fit for an API answer.
  package var databaseMessage: String {
    guard let error = postgresError else { return String(describing: self) }
    if let message = error.serverInfo?[.message] {
      let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
      return message + state
    }
    return "\(error.code)"
  }

  /// What an operator needs in a log line: for a database error its SQLSTATE, the server's
  /// message and the statement that failed (its text, never its bound values, which may hold
  /// personal data); for a failed transaction which step failed; anything else as it describes
  /// itself.
  package var logDescription: String {
    if let error = self as? PostgresTransactionError {
      if let closureError = error.closureError { return closureError.logDescription }
      let step = error.beginError != nil ? "BEGIN" : error.commitError != nil ? "COMMIT" : "ROLLBACK"
      let cause = error.beginError ?? error.commitError ?? error.rollbackError
      return "transaction \(step) failed: \(cause.map(\.logDescription) ?? "no reason given")"
    }
    guard let error = self as? PSQLError else { return String(describing: self) }
    var parts: [String] = []
    if let info = error.serverInfo {
      parts.append("SQLSTATE \(info[.sqlState] ?? "?"): \(info[.message] ?? "no message")")
    } else {
      parts.append("\(error.code)")
      if let underlying = error.underlying { parts.append("(\(underlying))") }
    }
    if let query = error.query { parts.append("in \(DatabaseStatement.label(query.sql))") }
    return parts.joined(separator: " ")
  }
}

/// Names a statement in logs by its text: whitespace folded, cut after 120 characters.
package enum DatabaseStatement {
  package static func label(_ sql: String) -> String {
    let folded = sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    return folded.count <= 120 ? "'\(folded)'" : "'\(folded.prefix(120))…'"
  }
}
