import Foundation
import PostgresNIO

/// An open issue that has reached its severity's alert threshold and has not been alerted.
struct DueAlert: Sendable {
  var fingerprint: String
  var severity: String
  var occurrences: Int64
  var finding: Finding
}

extension VerificationStore {
  /// Open issues not yet alerted whose occurrences reached their severity's threshold, oldest first.
  func dueAlerts(thresholds: [Finding.Severity: Int]) async throws -> [DueAlert] {
    var due: [DueAlert] = []
    for try await (fingerprint, severity, occurrences, body) in try await client.query(
      """
      SELECT fingerprint, severity, occurrences, body::text FROM verification.issues
      WHERE open AND alerted_at IS NULL
        AND occurrences >= CASE severity WHEN 'CRITICAL' THEN \(thresholds[.critical] ?? 1)
          WHEN 'HIGH' THEN \(thresholds[.high] ?? 5) WHEN 'MEDIUM' THEN \(thresholds[.medium] ?? 10)
          ELSE \(thresholds[.low] ?? 50) END
      ORDER BY last_seen_at, fingerprint
      """, logger: logger
    ).decode((String, String, Int64, String).self) {
      // A body an older version wrote that no longer decodes is skipped (and logged), so that it
      // cannot hold up every other alert.
      guard let finding = try? Self.decode(Finding.self, body) else {
        logger.error("an issue's stored finding does not decode; it is not alerted", metadata: ["fingerprint": "\(fingerprint)"])
        continue
      }
      due.append(DueAlert(fingerprint: fingerprint, severity: severity, occurrences: occurrences, finding: finding))
    }
    return due
  }

  /// Marks `fingerprint` alerted unless another replica did first; true when this one claimed it.
  func claimAlert(_ fingerprint: String) async throws -> Bool {
    try await client.query(
      "UPDATE verification.issues SET alerted_at = now() WHERE fingerprint = \(fingerprint) AND alerted_at IS NULL RETURNING 1",
      logger: logger
    ).collect().count == 1
  }

  /// Records an alert and how its delivery went; `retry` un-claims the issue so the next
  /// verification tries again.
  func recordAlert(_ alert: DueAlert, delivered: Bool, error: String, retry: Bool) async throws {
    let logger = self.logger
    try await client.withTransaction(logger: logger) { connection in
      try await connection.query(
        """
        INSERT INTO verification.alerts (fingerprint, severity, occurrences, description, delivered, error)
        VALUES (\(alert.fingerprint), \(alert.severity), \(alert.occurrences), \(alert.finding.description), \(delivered), \(error))
        """, logger: logger)
      if retry {
        try await connection.query(
          "UPDATE verification.issues SET alerted_at = NULL WHERE fingerprint = \(alert.fingerprint)", logger: logger)
      }
    }
  }
}
