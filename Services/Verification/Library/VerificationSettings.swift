import Foundation
import HeraldCore
import HeraldPostgres

/// The verification process's settings (README: configuration).
package struct VerificationSettings: Sendable {
  /// Between scheduled full verifications; zero turns the schedule off.
  package var interval: Duration = .seconds(300)
  /// Deadline of each check's statement, so a check never holds a lock for long.
  package var statementTimeout: Duration = .seconds(30)
  /// How long a check waits for a lock before giving up (checks only take ACCESS SHARE).
  package var lockTimeout: Duration = .seconds(1)
  /// A message in `sending` this long past its lease is stuck.
  package var stuckAfter: Duration = .seconds(300)
  /// A health check slower than this is reported (LOW).
  package var slowHealth: Duration = .seconds(1)
  /// Where alerts are POSTed (JSON); nil: alerts are recorded and shown, not sent.
  package var alertWebhook: String?
  /// Occurrences before an issue of each severity is alerted (SPEC §6: 1, 5, 10, 50).
  package var thresholds: [Finding.Severity: Int] = [.critical: 1, .high: 5, .medium: 10, .low: 50]
  /// A role that may write the service schemas, for approved repairs only; nil: repairs refused.
  package var repairDatabase: DatabaseConfiguration?
  /// Repairs: lock and statement timeouts.
  package var repairLockTimeout: Duration = .seconds(2)
  package var repairStatementTimeout: Duration = .seconds(60)

  package init() {}

  package static func load(_ settings: Settings) throws -> VerificationSettings {
    var result = VerificationSettings()
    result.interval = try settings.duration("HERALD_VERIFICATION_INTERVAL", default: result.interval)
    result.statementTimeout = try settings.duration("HERALD_VERIFICATION_STATEMENT_TIMEOUT", default: result.statementTimeout)
    result.stuckAfter = try settings.duration("HERALD_VERIFICATION_STUCK_AFTER", default: result.stuckAfter)
    result.alertWebhook = settings.optionalString("HERALD_VERIFICATION_ALERT_WEBHOOK")
    if let webhook = result.alertWebhook, URL(string: webhook)?.scheme.map({ ["http", "https"].contains($0) }) != true {
      throw ConfigurationError.malformed(variable: "HERALD_VERIFICATION_ALERT_WEBHOOK", value: webhook, expected: "an http(s) URL")
    }
    if let text = settings.optionalString("HERALD_VERIFICATION_ALERT_THRESHOLDS") {
      result.thresholds = try parseThresholds(text, into: result.thresholds)
    }
    if let url = settings.optionalString("HERALD_VERIFICATION_REPAIR_DATABASE_URL") {
      result.repairDatabase = try DatabaseConfiguration(url: url, variable: "HERALD_VERIFICATION_REPAIR_DATABASE_URL", poolSize: 2)
    }
    return result
  }

  /// `CRITICAL=1,HIGH=5,MEDIUM=10,LOW=50` (any subset).
  package static func parseThresholds(_ text: String, into defaults: [Finding.Severity: Int]) throws -> [Finding.Severity: Int] {
    var result = defaults
    for part in text.split(separator: ",") {
      let pair = part.split(separator: "=").map { $0.trimmingCharacters(in: .whitespaces) }
      guard pair.count == 2, let severity = Finding.Severity(rawValue: pair[0].uppercased()), let count = Int(pair[1]), count >= 1 else {
        throw ConfigurationError.malformed(
          variable: "HERALD_VERIFICATION_ALERT_THRESHOLDS", value: text, expected: "SEVERITY=count pairs, e.g. CRITICAL=1,HIGH=5")
      }
      result[severity] = count
    }
    return result
  }
}
