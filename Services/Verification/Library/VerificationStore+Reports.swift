import Foundation
import HeraldCore
import PostgresNIO

/// An issue as tracked across reports (by fingerprint): the finding last seen and its history.
struct TrackedIssue: Sendable {
  var finding: Finding
  var firstSeenAt: Date
  var lastSeenAt: Date
  var occurrences: Int64
  var open: Bool
  var alertedAt: Date?
}

extension VerificationStore {
  /// Stores a report and tracks its findings as issues, in one transaction: a finding seen again
  /// counts one more occurrence (and reopens a resolved issue); what the components checked this
  /// time did not find again is resolved (and may alert anew if it comes back).
  func save(_ report: StoredReport) async throws {
    let body = try Self.json(report)
    let issues = try report.findings.map { ($0, try Self.json($0)) }
    let checked = report.components.filter { $0.note.isEmpty }.map(\.component)
    let logger = self.logger
    try await client.withTransaction(logger: logger) { connection in
      try await connection.query(
        """
        INSERT INTO verification.reports (id, kind, started_at, finished_at, overall_status, body)
        VALUES (\(report.id), \(report.kind), \(report.startedAt), \(report.finishedAt), \(report.overallStatus), \(body)::jsonb)
        """, logger: logger)
      for (finding, issue) in issues {
        try await connection.query(
          """
          INSERT INTO verification.issues (fingerprint, component, check_name, severity, first_seen_at, last_seen_at, last_report_id, body)
          VALUES (\(finding.fingerprint), \(finding.component), \(finding.check), \(finding.severity.rawValue), \(report.startedAt),
            \(report.startedAt), \(report.id), \(issue)::jsonb)
          ON CONFLICT (fingerprint) DO UPDATE SET
            occurrences = verification.issues.occurrences + 1, last_seen_at = excluded.last_seen_at,
            last_report_id = excluded.last_report_id, severity = excluded.severity, body = excluded.body,
            open = true, resolved_at = NULL
          """, logger: logger)
      }
      try await connection.query(
        """
        UPDATE verification.issues SET open = false, resolved_at = now()
        WHERE open AND component = ANY(\(checked)::text[]) AND last_report_id IS DISTINCT FROM \(report.id)
        """, logger: logger)
    }
  }

  /// Stores a check of the migration ledgers (CheckMigrationLedgers) as a report of kind `ledger`.
  func saveLedgerCheck(_ reports: [SchemaLedgerReport], started: Date) async throws {
    let status =
      reports.contains { $0.state == .diverged || $0.state == .missing }
      ? "critical"
      : reports.contains { $0.state == .pending } ? "warning" : "ok"
    let body = try Self.json(reports)
    try await client.query(
      """
      INSERT INTO verification.reports (kind, started_at, finished_at, overall_status, body)
      VALUES ('ledger', \(started), now(), \(status), \(body)::jsonb)
      """, logger: logger)
  }

  /// The report with `id`; nil when there is none.
  func report(_ id: UUID) async throws -> StoredReport? {
    try await reports(
      client.query("SELECT body::text FROM verification.reports WHERE id = \(id)", logger: logger)
    ).first
  }

  /// The newest `limit` full reports (a ledger check on its own stores no findings list), newest first.
  func latestReports(limit: Int) async throws -> [StoredReport] {
    try await reports(
      client.query(
        """
        SELECT body::text FROM verification.reports WHERE body ? 'findings'
        ORDER BY started_at DESC, id LIMIT \(limit)
        """, logger: logger))
  }

  private func reports(_ rows: PostgresRowSequence) async throws -> [StoredReport] {
    var reports: [StoredReport] = []
    for try await body in rows.decode(String.self) {
      // A body an older version wrote that no longer decodes is skipped, not an error of the list.
      if let report = try? Self.decode(StoredReport.self, body) { reports.append(report) }
    }
    return reports
  }

  /// Issues as tracked, by fingerprint: those of `fingerprints` (nil: all), open ones only unless
  /// `includeResolved`.
  func issues(fingerprints: [String]?, includeResolved: Bool) async throws -> [String: TrackedIssue] {
    var result: [String: TrackedIssue] = [:]
    let rows = try await client.query(
      """
      SELECT fingerprint, body::text, first_seen_at, last_seen_at, occurrences, open, alerted_at FROM verification.issues
      WHERE (\(fingerprints == nil) OR fingerprint = ANY(\(fingerprints ?? [])::text[])) AND (\(includeResolved) OR open)
      """, logger: logger)
    for try await (fingerprint, body, first, last, occurrences, open, alerted) in rows.decode(
      (String, String, Date, Date, Int64, Bool, Date?).self)
    {
      guard let finding = try? Self.decode(Finding.self, body) else { continue }
      result[fingerprint] = TrackedIssue(
        finding: finding, firstSeenAt: first, lastSeenAt: last, occurrences: occurrences, open: open, alertedAt: alerted)
    }
    return result
  }
}
