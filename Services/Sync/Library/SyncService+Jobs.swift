import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Jobs: their checks (`validate`), storage, and changes and deletion under the job's lock (not
/// while a run goes).
extension SyncService {
  package func createJob(request: Herald_Sync_V1_CreateJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_Job {
    let job = try Self.validate(request)
    do {
      return Self.message(try await store.createJob(job))
    } catch SyncStoreError.duplicate(let field) {
      throw RPCError.field(
        field, .alreadyExists,
        field == "name" ? "a sync job is already named '\(job.name)'" : "table \(job.baseID)/\(job.tableID) already has a sync job")
    }
  }

  package func getJob(request: Herald_Sync_V1_GetJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_Job {
    Self.message(try await job(request.id, field: "id"))
  }

  package func listJobs(request: Herald_Sync_V1_ListJobsRequest, context: ServerContext) async throws -> Herald_Sync_V1_ListJobsResponse {
    var response = Herald_Sync_V1_ListJobsResponse()
    response.jobs = try await store.jobs().map(Self.message)
    return response
  }

  package func updateJob(request: Herald_Sync_V1_UpdateJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_Job {
    let current = try await job(request.id, field: "id")
    // The job as a create request with the changes applied, checked like a new one.
    var changed = Self.createRequest(current)
    if request.hasName { changed.name = request.name }
    if request.hasTokenEnv { changed.tokenEnv = request.tokenEnv }
    if request.direction != .unspecified { changed.direction = request.direction }
    if !request.mappings.isEmpty { changed.mappings = request.mappings }
    if request.hasModifiedField { changed.modifiedField = request.modifiedField }
    if request.hasOverlapSeconds { changed.overlapSeconds = request.overlapSeconds }
    if request.defaultPolicy != .unspecified { changed.defaultPolicy = request.defaultPolicy }
    if request.hasScheduleSeconds { changed.scheduleSeconds = request.scheduleSeconds }
    if request.hasReconcileSeconds { changed.reconcileSeconds = request.reconcileSeconds }
    if request.hasMaxDeletePercent { changed.maxDeletePercent = request.maxDeletePercent }
    let job = try Self.validate(changed)
    guard changed.overlapSeconds >= 1 else {
      throw RPCError.field(
        "overlap_seconds", .invalidArgument,
        "overlap_seconds must be at least 1: records last modified at the checkpoint's own time would be skipped")
    }
    let id = try current.storedID()
    do {
      try await whileNoRun(current, "the job cannot be changed until it ends") { connection in
        try await store.updateJob(id, to: job, on: connection)
      }
    } catch SyncStoreError.duplicate {
      throw RPCError.field("name", .alreadyExists, "a sync job is already named '\(job.name)'")
    }
    return Self.message(try await self.job(request.id, field: "id"))
  }

  package func deleteJob(request: Herald_Sync_V1_DeleteJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_DeleteJobResponse
  {
    let current = try await job(request.id, field: "id")
    let id = try current.storedID()
    let deleted = try await whileNoRun(current, "the job cannot be deleted until it ends") { connection in
      try await store.deleteJob(id, on: connection)
    }
    return .with { $0.deleted = deleted }
  }

  static func createRequest(_ job: SyncJob) -> Herald_Sync_V1_CreateJobRequest {
    let message = Self.message(job)
    return .with {
      $0.name = message.name
      $0.baseID = message.baseID
      $0.tableID = message.tableID
      $0.tokenEnv = message.tokenEnv
      $0.direction = message.direction
      $0.mappings = message.mappings
      $0.modifiedField = message.modifiedField
      $0.overlapSeconds = message.overlapSeconds
      $0.defaultPolicy = message.defaultPolicy
      $0.scheduleSeconds = message.scheduleSeconds
      $0.reconcileSeconds = message.reconcileSeconds
      $0.maxDeletePercent = message.maxDeletePercent
    }
  }

  static func policy(_ value: Herald_Sync_V1_ConflictPolicy, field: String) throws -> ConflictPolicy? {
    switch value {
    case .unspecified: return nil
    case .localWins: return .localWins
    case .remoteWins: return .remoteWins
    case .lastWriterWins: return .lastWriterWins
    case .manual: return .manual
    case .UNRECOGNIZED(let number): throw RPCError.field(field, .invalidArgument, "\(field) \(number) is not a conflict policy")
    }
  }

  static func message(_ policy: ConflictPolicy) -> Herald_Sync_V1_ConflictPolicy {
    switch policy {
    case .localWins: return .localWins
    case .remoteWins: return .remoteWins
    case .lastWriterWins: return .lastWriterWins
    case .manual: return .manual
    }
  }

  /// A job from a create request (or an update applied to a job's settings), checked: the name,
  /// base id and table id trimmed of white space and line breaks, 1 to 200 characters; the token
  /// named by a variable ending in _TOKEN; mappings of known subscriber fields, each once, one of
  /// them email or phone; numbers in range.
  static func validate(_ request: Herald_Sync_V1_CreateJobRequest) throws -> SyncJob {
    func trimmed(_ field: String, _ value: String) throws -> String {
      let text = value.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !text.isEmpty, text.count <= 200 else {
        throw RPCError.field(field, .invalidArgument, "\(field) must be 1 to 200 characters")
      }
      return text
    }
    let name = try trimmed("name", request.name)
    let baseID = try trimmed("base_id", request.baseID)
    let tableID = try trimmed("table_id", request.tableID)
    let tokenEnv = request.tokenEnv
    guard let first = tokenEnv.first, first == "_" || first.isUppercase,
      tokenEnv.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") })
    else {
      throw RPCError.field(
        "token_env", .invalidArgument,
        "token_env must name an environment variable (e.g. AIRTABLE_TOKEN), not hold the token")
    }
    // Only variables meant for it: any other (HERALD_DATABASE_URL...) would go out as a bearer token.
    guard tokenEnv.hasSuffix("_TOKEN") else {
      throw RPCError.field(
        "token_env", .invalidArgument, "token_env must name a variable ending in _TOKEN (e.g. AIRTABLE_TOKEN), got \(tokenEnv)")
    }
    let direction: SyncJob.Direction
    switch request.direction {
    case .pull: direction = .pull
    case .push: direction = .push
    case .both: direction = .both
    case .unspecified, .UNRECOGNIZED: throw RPCError.field("direction", .invalidArgument, "direction must be pull, push or both")
    }
    guard !request.mappings.isEmpty else {
      throw RPCError.field("mappings", .invalidArgument, "mappings is empty: map at least one remote field")
    }
    var externals = Set<String>()
    var locals = Set<String>()
    var mappings: [SyncJob.Mapping] = []
    for (index, mapping) in request.mappings.enumerated() {
      guard !mapping.externalField.isEmpty else {
        throw RPCError.field("mappings[\(index)].external_field", .invalidArgument, "mappings[\(index)].external_field is empty")
      }
      let local = mapping.subscriberField
      guard SubscriberField.isValid(local) else {
        let known = (SubscriberField.synced.union(SubscriberField.pushOnly)).sorted().joined(separator: ", ")
        throw RPCError.field(
          "mappings[\(index)].subscriber_field", .invalidArgument,
          "mappings[\(index)].subscriber_field '\(local)' is not one of \(known) or attributes.<name>")
      }
      guard externals.insert(mapping.externalField).inserted else {
        throw RPCError.field(
          "mappings[\(index)].external_field", .invalidArgument, "remote field '\(mapping.externalField)' is mapped twice")
      }
      guard locals.insert(local).inserted else {
        throw RPCError.field("mappings[\(index)].subscriber_field", .invalidArgument, "subscriber field '\(local)' is mapped twice")
      }
      if SubscriberField.pushOnly.contains(local) && direction == .pull {
        throw RPCError.field(
          "mappings[\(index)].subscriber_field", .invalidArgument,
          "\(local) is written to the remote table only, and direction is pull: use push or both")
      }
      mappings.append(
        .init(
          externalField: mapping.externalField, subscriberField: local,
          policy: try policy(mapping.conflictPolicy, field: "mappings[\(index)].conflict_policy")))
    }
    guard locals.contains("email") || locals.contains("phone") else {
      throw RPCError.field(
        "mappings", .invalidArgument, "map a remote field to email or phone: records are matched to subscribers on them")
    }
    var job = SyncJob(name: name, baseID: baseID, tableID: tableID, tokenEnv: tokenEnv, direction: direction, mappings: mappings)
    job.modifiedField = request.modifiedField
    for (field, value, range) in [
      ("overlap_seconds", request.overlapSeconds, 0...86_400), ("schedule_seconds", request.scheduleSeconds, 0...31_536_000),
      ("reconcile_seconds", request.reconcileSeconds, 0...31_536_000), ("max_delete_percent", request.maxDeletePercent, 0...100),
    ] {
      guard range.contains(Int(value)) else {
        throw RPCError.field(field, .invalidArgument, "\(field) must be from \(range.lowerBound) to \(range.upperBound), got \(value)")
      }
    }
    if request.overlapSeconds > 0 { job.overlap = Int(request.overlapSeconds) }
    job.scheduleSeconds = Int(request.scheduleSeconds)
    if request.reconcileSeconds > 0 { job.reconcileSeconds = Int(request.reconcileSeconds) }
    if request.maxDeletePercent > 0 { job.maxDeletePercent = Int(request.maxDeletePercent) }
    job.defaultPolicy = try policy(request.defaultPolicy, field: "default_policy") ?? .remoteWins
    return job
  }

  static func message(_ job: SyncJob) -> Herald_Sync_V1_Job {
    var message = Herald_Sync_V1_Job()
    message.id = job.id?.lowercasedString ?? ""
    message.name = job.name
    message.baseID = job.baseID
    message.tableID = job.tableID
    message.tokenEnv = job.tokenEnv
    switch job.direction {
    case .pull: message.direction = .pull
    case .push: message.direction = .push
    case .both: message.direction = .both
    }
    message.mappings = job.mappings.map { mapping in
      var message = Herald_Sync_V1_FieldMapping()
      message.externalField = mapping.externalField
      message.subscriberField = mapping.subscriberField
      if let policy = mapping.policy { message.conflictPolicy = Self.message(policy) }
      return message
    }
    if let createdAt = job.createdAt { message.createdAt = Google_Protobuf_Timestamp(date: createdAt) }
    message.modifiedField = job.modifiedField
    message.overlapSeconds = Int32(job.overlap)
    message.defaultPolicy = Self.message(job.defaultPolicy)
    message.scheduleSeconds = Int32(job.scheduleSeconds)
    message.reconcileSeconds = Int32(job.reconcileSeconds)
    message.maxDeletePercent = Int32(job.maxDeletePercent)
    message.cursor = job.cursor
    if let at = job.lastFullSyncAt { message.lastFullSyncAt = Google_Protobuf_Timestamp(date: at) }
    return message
  }
}
