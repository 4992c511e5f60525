import Crypto
import Foundation

/// SPEC §6's issue: what a check found, stable across reports by its fingerprint.
package struct Finding: Sendable, Codable, Equatable {
  package enum Severity: String, Sendable, Codable, Comparable, CaseIterable {
    case low = "LOW"
    case medium = "MEDIUM"
    case high = "HIGH"
    case critical = "CRITICAL"
    var rank: Int { Self.allCases.firstIndex(of: self)! }
    package static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
  }
  package enum Category: String, Sendable, Codable {
    case database = "DATABASE"
    case sync = "SYNC"
    case service = "SERVICE"
    case data = "DATA"
  }

  package var check: String
  package var component: String
  package var severity: Severity
  package var category: Category
  package var description: String
  package var affectedObject: String
  package var count: Int
  package var sampleKeys: [String]
  package var suggestedRepair: String
  /// nil: nothing to run; the suggestion is for people.
  package var repair: RepairPlan?

  package var fingerprint: String {
    let digest = SHA256.hash(data: Data("\(check)|\(affectedObject)".utf8))
    return digest.prefix(10).map { String(format: "%02x", $0) }.joined()
  }
  package var autoRepairable: Bool { repair.map { !$0.needsReview } ?? false }
  package var risk: String { repair?.risk ?? "none" }
}

/// How to repair a finding: statements run in one transaction after the rows `backupQuery`
/// selects are copied to the backup schema; `needsReview` for destructive or ambiguous repairs.
package struct RepairPlan: Sendable, Codable, Equatable {
  package var statements: [String]
  /// SELECT of the rows the statements change (nil for catalog changes: nothing to copy).
  package var backupQuery: String?
  /// Rows that go with them (deleted by a statement of their own or by ON DELETE CASCADE), each
  /// copied to a table of its own.
  package var alsoBackUp: [String] = []
  package var needsReview: Bool
  /// low, medium, high.
  package var risk: String

  package init(statements: [String], backupQuery: String?, alsoBackUp: [String] = [], needsReview: Bool, risk: String) {
    self.statements = statements
    self.backupQuery = backupQuery
    self.alsoBackUp = alsoBackUp
    self.needsReview = needsReview
    self.risk = risk
  }
}

package struct ComponentResult: Sendable, Codable, Equatable {
  package var component: String
  package var status: String
  package var issues: Int
  package var durationMs: Int
  package var note: String
}

package struct StoredReport: Sendable, Codable {
  package var id: UUID
  package var kind: String
  package var startedAt: Date
  package var finishedAt: Date
  package var overallStatus: String
  package var components: [ComponentResult]
  package var findings: [Finding]
  package var summary: String
}

enum Mask {
  /// `ada.lovelace@example.com` → `a***@example.com`; a phone keeps its first 3 and last 2 digits.
  static func personal(_ value: String) -> String {
    if let at = value.lastIndex(of: "@") {
      let local = value[..<at]
      return "\(local.first.map(String.init) ?? "")***\(value[at...])"
    }
    let digits = value.filter(\.isNumber)
    if digits.count >= 7 {
      return String(value.prefix(3)) + String(repeating: "*", count: max(0, value.count - 5)) + String(value.suffix(2))
    }
    return value.isEmpty ? "" : "\(value.prefix(1))***"
  }
}

enum Overall {
  static func status(of findings: [Finding], skipped: Bool = false) -> String {
    let worst = findings.map(\.severity).max()
    if let worst, worst >= .high { return "critical" }
    if worst != nil || skipped { return "warning" }
    return "ok"
  }

  static func summary(status: String, findings: [Finding], components: [ComponentResult]) -> String {
    var lines = [
      "\(status.uppercased()): \(findings.count) issue\(findings.count == 1 ? "" : "s") in \(components.count) component\(components.count == 1 ? "" : "s")"
    ]
    let counts = Finding.Severity.allCases.reversed().compactMap { severity -> String? in
      let n = findings.filter { $0.severity == severity }.count
      return n == 0 ? nil : "\(n) \(severity.rawValue)"
    }
    if !counts.isEmpty { lines[0] += " (" + counts.joined(separator: ", ") + ")" }
    for finding in findings.sorted(by: { $0.severity > $1.severity }).prefix(5) {
      lines.append("- \(finding.severity.rawValue) \(finding.check) \(finding.affectedObject): \(finding.description)")
    }
    for component in components where !component.note.isEmpty {
      lines.append("- \(component.component): \(component.note)")
    }
    return lines.joined(separator: "\n")
  }
}
