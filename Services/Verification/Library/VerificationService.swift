import Foundation
import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import SwiftProtobuf

/// `herald.verification.v1.VerificationService`.
package struct VerificationService: Herald_Verification_V1_VerificationService.SimpleServiceProtocol {
  let checker: LedgerChecker
  let verifier: Verifier
  let repairs: RepairDesk
  let store: VerificationStore

  package init(checker: LedgerChecker, verifier: Verifier, repairs: RepairDesk, store: VerificationStore) {
    self.checker = checker
    self.verifier = verifier
    self.repairs = repairs
    self.store = store
  }

  package func checkMigrationLedgers(
    request: Herald_Verification_V1_CheckMigrationLedgersRequest, context: ServerContext
  ) async throws -> Herald_Verification_V1_CheckMigrationLedgersResponse {
    let reports: [SchemaLedgerReport]
    do {
      reports = try await checker.check(schemas: request.schemas)
    } catch let error as UnknownSchema {
      throw RPCError.field("schemas", .invalidArgument, VerificationError.unknownSchema(error.schema).description)
    }
    var response = Herald_Verification_V1_CheckMigrationLedgersResponse()
    response.schemas = reports.map { report in
      var message = Herald_Verification_V1_SchemaLedger()
      message.schema = report.schema
      switch report.state {
      case .current: message.state = .current
      case .pending: message.state = .pending
      case .diverged: message.state = .diverged
      case .missing: message.state = .missing
      }
      message.applied = Int32(report.applied)
      message.known = Int32(report.known)
      message.findings = report.findings.map { finding in
        var message = Herald_Verification_V1_LedgerFinding()
        message.version = Int32(finding.version)
        message.name = finding.name
        message.kind = finding.kind
        message.expectedChecksum = finding.expectedChecksum ?? ""
        message.recordedChecksum = finding.recordedChecksum ?? ""
        return message
      }
      return message
    }
    return response
  }

  // MARK: - Reports and issues

  package func runVerification(
    request: Herald_Verification_V1_RunVerificationRequest, context: ServerContext
  ) async throws -> Herald_Verification_V1_VerificationReport {
    let report: StoredReport
    do {
      report = try await verifier.run(component: request.component.isEmpty ? nil : request.component, schemas: request.schemas)
    } catch let error as VerificationError {
      switch error {
      case .unknownComponent: throw RPCError.field("component", .invalidArgument, error.description)
      case .unknownSchema: throw RPCError.field("schemas", .invalidArgument, error.description)
      }
    }
    return try await message(report)
  }

  package func getReport(request: Herald_Verification_V1_GetReportRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_VerificationReport
  {
    let report: StoredReport?
    if request.id == "latest" {
      report = try await store.latestReports(limit: 1).first
    } else {
      report = try await store.report(try RPCError.uuid(request.id, field: "id"))
    }
    guard let report else {
      throw RPCError.field("id", .notFound, request.id == "latest" ? "no verification has run yet" : "no report has id \(request.id)")
    }
    return try await message(report)
  }

  package func listReports(request: Herald_Verification_V1_ListReportsRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_ListReportsResponse
  {
    guard (0...100).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 100 (0 means 20)")
    }
    var response = Herald_Verification_V1_ListReportsResponse()
    for var report in try await store.latestReports(limit: request.pageSize == 0 ? 20 : Int(request.pageSize)) {
      report.findings = []
      response.reports.append(try await message(report))
    }
    return response
  }

  package func listIssues(request: Herald_Verification_V1_ListIssuesRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_ListIssuesResponse
  {
    var response = Herald_Verification_V1_ListIssuesResponse()
    response.issues = try await issues(fingerprints: nil, includeResolved: request.includeResolved).map(\.value).sorted {
      ($0.severity.rawValue, $1.lastSeenAt.seconds, $0.fingerprint) > ($1.severity.rawValue, $0.lastSeenAt.seconds, $1.fingerprint)
    }
    return response
  }

  /// Issues as tracked (first and last seen, occurrences, open), by fingerprint.
  func issues(fingerprints: [String]?, includeResolved: Bool) async throws -> [String: Herald_Verification_V1_Issue] {
    try await store.issues(fingerprints: fingerprints, includeResolved: includeResolved).mapValues { tracked in
      var issue = Self.message(tracked.finding)
      issue.firstSeenAt = Google_Protobuf_Timestamp(date: tracked.firstSeenAt)
      issue.lastSeenAt = Google_Protobuf_Timestamp(date: tracked.lastSeenAt)
      issue.occurrences = tracked.occurrences
      issue.open = tracked.open
      if let alerted = tracked.alertedAt { issue.alertedAt = Google_Protobuf_Timestamp(date: alerted) }
      return issue
    }
  }

  func message(_ report: StoredReport) async throws -> Herald_Verification_V1_VerificationReport {
    let tracked = report.findings.isEmpty ? [:] : try await issues(fingerprints: report.findings.map(\.fingerprint), includeResolved: true)
    var message = Herald_Verification_V1_VerificationReport()
    message.id = report.id.lowercasedString
    message.kind = report.kind
    message.startedAt = Google_Protobuf_Timestamp(date: report.startedAt)
    message.finishedAt = Google_Protobuf_Timestamp(date: report.finishedAt)
    message.overallStatus = Self.status(report.overallStatus)
    message.summary = report.summary
    message.components = report.components.map { component in
      .with {
        $0.component = component.component
        $0.status = Self.status(component.status)
        $0.issues = Int32(component.issues)
        $0.durationMs = Int64(component.durationMs)
        $0.note = component.note
      }
    }
    message.issues = report.findings.map { finding in
      var issue = tracked[finding.fingerprint] ?? Self.message(finding)
      // The report's own view of what it found (the tracked issue may have changed since).
      let own = Self.message(finding)
      issue.count = own.count
      issue.description_p = own.description_p
      issue.sampleKeys = own.sampleKeys
      issue.severity = own.severity
      return issue
    }
    return message
  }

  static func status(_ text: String) -> Herald_Verification_V1_Status {
    switch text {
    case "ok": return .ok
    case "warning": return .warning
    default: return .critical
    }
  }

  static func message(_ finding: Finding) -> Herald_Verification_V1_Issue {
    var issue = Herald_Verification_V1_Issue()
    issue.fingerprint = finding.fingerprint
    switch finding.severity {
    case .critical: issue.severity = .critical
    case .high: issue.severity = .high
    case .medium: issue.severity = .medium
    case .low: issue.severity = .low
    }
    switch finding.category {
    case .database: issue.category = .database
    case .sync: issue.category = .sync
    case .service: issue.category = .service
    case .data: issue.category = .data
    }
    issue.check = finding.check
    issue.description_p = finding.description
    issue.affectedObject = finding.affectedObject
    issue.count = Int64(finding.count)
    issue.sampleKeys = finding.sampleKeys
    issue.suggestedRepair = finding.suggestedRepair
    issue.autoRepairable = finding.autoRepairable
    issue.risk = finding.risk
    issue.component = finding.component
    return issue
  }

  // MARK: - Repairs

  package func proposeRepair(request: Herald_Verification_V1_ProposeRepairRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_Repair
  {
    guard !request.fingerprint.isEmpty else { throw RPCError.field("fingerprint", .invalidArgument, "fingerprint is required") }
    return Self.message(try await repairs.propose(fingerprint: request.fingerprint, by: request.requestedBy))
  }

  package func runRepair(request: Herald_Verification_V1_RunRepairRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_Repair
  {
    let id = try RPCError.uuid(request.id, field: "id")
    return Self.message(try await repairs.run(id, apply: request.apply, by: request.requestedBy))
  }

  package func reviewRepair(request: Herald_Verification_V1_ReviewRepairRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_Repair
  {
    let id = try RPCError.uuid(request.id, field: "id")
    return Self.message(try await repairs.review(id, approve: request.approve, reviewer: request.reviewer, note: request.note))
  }

  package func listRepairs(request: Herald_Verification_V1_ListRepairsRequest, context: ServerContext) async throws
    -> Herald_Verification_V1_ListRepairsResponse
  {
    var response = Herald_Verification_V1_ListRepairsResponse()
    response.repairs = try await store.repairs(pendingOnly: request.pendingReview).map(Self.message)
    return response
  }

  static func message(_ repair: RepairRecord) -> Herald_Verification_V1_Repair {
    var message = Herald_Verification_V1_Repair()
    message.id = repair.id.lowercasedString
    message.fingerprint = repair.fingerprint
    message.check = repair.finding.check
    message.affectedObject = repair.finding.affectedObject
    message.status =
      switch repair.status {
      case "proposed": .proposed
      case "pending_review": .pendingReview
      case "approved": .approved
      case "rejected": .rejected
      case "applied": .applied
      default: .rolledBack
      }
    message.needsReview = repair.needsReview
    message.risk = repair.plan.risk
    message.description_p = repair.finding.description
    message.statements = repair.plan.statements
    message.backupQuery = repair.plan.backupQuery ?? ""
    message.createdAt = Google_Protobuf_Timestamp(date: repair.createdAt)
    message.requestedBy = repair.requestedBy
    message.reviewedBy = repair.reviewedBy ?? ""
    if let at = repair.reviewedAt { message.reviewedAt = Google_Protobuf_Timestamp(date: at) }
    message.reviewNote = repair.reviewNote
    message.runs = repair.runs.map { run in
      .with {
        $0.dryRun = run.dryRun
        $0.at = Google_Protobuf_Timestamp(date: run.at)
        $0.by = run.by
        $0.rows = run.rows.map(Int64.init)
        $0.backupTable = run.backupTable
        $0.backedUpRows = Int64(run.backedUpRows)
        $0.issueRemains = run.issueRemains
        $0.error = run.error
        $0.committed = run.committed
      }
    }
    return message
  }
}
