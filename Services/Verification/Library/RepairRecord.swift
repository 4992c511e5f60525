import Foundation

/// A repair as stored: the plan of one issue, its review, and its runs (from the audit).
package struct RepairRecord: Sendable {
  package struct Run: Sendable, Codable {
    package var dryRun: Bool
    package var at: Date
    package var by: String
    package var rows: [Int]
    package var backupTable: String
    package var backedUpRows: Int
    package var issueRemains: Bool
    package var error: String
    package var committed: Bool
  }

  package var id: UUID
  package var fingerprint: String
  package var finding: Finding
  package var plan: RepairPlan
  package var status: String
  package var needsReview: Bool
  package var createdAt: Date
  package var requestedBy: String
  package var reviewedBy: String?
  package var reviewedAt: Date?
  package var reviewNote: String
  package var runs: [Run] = []
}
