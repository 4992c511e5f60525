import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import SwiftProtobuf

/// `herald.sync.v1.SyncService`.
package struct SyncService: Herald_Sync_V1_SyncService.SimpleServiceProtocol {
  let store: any JobStore
  let runs: RunManager
  let client: PostgresClient
  let logger: Logger

  package init(store: any JobStore, runs: RunManager, client: PostgresClient, logger: Logger) {
    self.store = store
    self.runs = runs
    self.client = client
    self.logger = logger
  }

  // MARK: - Jobs

  package func createJob(request: Herald_Sync_V1_CreateJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_Job {
    let job = try Self.validate(request)
    do {
      return Self.message(try await store.create(job))
    } catch JobStoreError.duplicate(let field) {
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
    response.jobs = try await store.all().map(Self.message)
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
    var job = try Self.validate(changed)
    guard changed.overlapSeconds >= 1 else {
      throw RPCError.field(
        "overlap_seconds", .invalidArgument,
        "overlap_seconds must be at least 1: records last modified at the checkpoint's own time would be skipped")
    }
    job.overlap = Int(changed.overlapSeconds)
    job.id = current.id
    let update = job
    do {
      try await runs.withJobLock(current) { connection in try await store.update(update, on: connection) }
    } catch RunManager.StartError.busy(let name, let run) {
      throw Self.busy(name, run, "the job cannot be changed until it ends")
    } catch JobStoreError.duplicate {
      throw RPCError.field("name", .alreadyExists, "a sync job is already named '\(job.name)'")
    }
    return Self.message(try await self.job(request.id, field: "id"))
  }

  package func deleteJob(request: Herald_Sync_V1_DeleteJobRequest, context: ServerContext) async throws -> Herald_Sync_V1_DeleteJobResponse {
    let current = try await job(request.id, field: "id")
    do {
      let deleted = try await runs.withJobLock(current) { connection in try await store.delete(id: current.id!, on: connection) }
      return .with { $0.deleted = deleted }
    } catch RunManager.StartError.busy(let name, let run) {
      throw Self.busy(name, run, "the job cannot be deleted until it ends")
    }
  }

  static func busy(_ name: String, _ run: UUID?, _ consequence: String) -> RPCError {
    RPCError(
      code: .failedPrecondition,
      message: "a run of job '\(name)' is in progress\(run.map { " (run \($0.lowercasedString))" } ?? ""): \(consequence)")
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

  private func job(_ text: String, field: String) async throws -> SyncJob {
    let id = try RPCError.uuid(text, field: field)
    guard let job = try await store.get(id: id) else { throw RPCError.field(field, .notFound, "no sync job has id \(text)") }
    return job
  }

  // MARK: - Runs

  package func startRun(request: Herald_Sync_V1_StartRunRequest, context: ServerContext) async throws -> Herald_Sync_V1_Run {
    let job = try await job(request.jobID, field: "job_id")
    do {
      return Self.message(try await runs.start(job, dryRun: request.dryRun, full: request.full))
    } catch RunManager.StartError.busy(let name, let run) {
      throw Self.busy(name, run, "one run at a time per table")
    } catch RunManager.StartError.stopping {
      throw RPCError(code: .unavailable, message: "the sync service is stopping; start the run again later")
    }
  }

  package func getRun(request: Herald_Sync_V1_GetRunRequest, context: ServerContext) async throws -> Herald_Sync_V1_Run {
    let id = try RPCError.uuid(request.id, field: "id")
    guard let run = try await RunStore.get(id, client: client, logger: logger) else {
      throw RPCError.field("id", .notFound, "no sync run has id \(request.id)")
    }
    return Self.message(run)
  }

  package func listRuns(request: Herald_Sync_V1_ListRunsRequest, context: ServerContext) async throws -> Herald_Sync_V1_ListRunsResponse {
    let job = try await job(request.jobID, field: "job_id")
    guard (0...100).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 100 (0 means 20)")
    }
    var response = Herald_Sync_V1_ListRunsResponse()
    response.runs = try await RunStore.list(
      job: job.id!, limit: request.pageSize == 0 ? 20 : Int(request.pageSize), client: client, logger: logger
    ).map(Self.message)
    return response
  }

  // MARK: - Conflicts

  static let conflictColumns = """
    id, job_id, run_id, record_id, subscriber_id, subscriber_field, base_value::text, local_value::text, remote_value::text,
    policy, resolution, created_at, resolved_at
    """

  package func listConflicts(
    request: Herald_Sync_V1_ListConflictsRequest, context: ServerContext
  ) async throws -> Herald_Sync_V1_ListConflictsResponse {
    let job = try await job(request.jobID, field: "job_id")
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 100)")
    }
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.conflictColumns) FROM sync.conflicts
      WHERE job_id = \(job.id!) AND (NOT \(request.pending) OR resolution = 'pending')
      ORDER BY created_at DESC, id LIMIT \(request.pageSize == 0 ? 100 : Int(request.pageSize))
      """, logger: logger)
    var response = Herald_Sync_V1_ListConflictsResponse()
    response.conflicts = try await rows.collect().map(Self.conflict)
    return response
  }

  package func resolveConflict(request: Herald_Sync_V1_ResolveConflictRequest, context: ServerContext) async throws -> Herald_Sync_V1_Conflict {
    let id = try RPCError.uuid(request.id, field: "id")
    guard ["local", "remote"].contains(request.take) else {
      throw RPCError.field("take", .invalidArgument, "take must be 'local' or 'remote', got '\(request.take)'")
    }
    guard let row = try await client.query(
      "SELECT \(unescaped: Self.conflictColumns) FROM sync.conflicts WHERE id = \(id)", logger: logger
    ).collect().first else {
      throw RPCError.field("id", .notFound, "no conflict has id \(request.id)")
    }
    let conflict = try Self.conflict(row)
    guard conflict.resolution == "pending" else {
      throw RPCError(code: .failedPrecondition, message: "conflict \(request.id) was already settled (\(conflict.resolution) won)")
    }
    let job = try await job(conflict.jobID, field: "job_id")
    let resolver = ConflictResolver(job: job, runs: runs, client: client, logger: logger)
    do {
      // Not while a run rewrites the record's snapshot.
      try await runs.withJobLock(job) { _ in try await resolver.resolve(conflict, take: request.take) }
    } catch RunManager.StartError.busy(let name, let run) {
      throw Self.busy(name, run, "its conflicts cannot be resolved until it ends")
    }
    guard let settled = try await client.query(
      "SELECT \(unescaped: Self.conflictColumns) FROM sync.conflicts WHERE id = \(id)", logger: logger
    ).collect().first else {
      throw RPCError(code: .internalError, message: "conflict \(request.id) disappeared while being resolved")
    }
    return try Self.conflict(settled)
  }

  // MARK: - Validation and messages

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

  static func validate(_ request: Herald_Sync_V1_CreateJobRequest) throws -> SyncJob {
    for (field, value) in [("name", request.name), ("base_id", request.baseID), ("table_id", request.tableID)] {
      guard !value.trimmingCharacters(in: .whitespaces).isEmpty, value.count <= 200 else {
        throw RPCError.field(field, .invalidArgument, "\(field) must be 1 to 200 characters")
      }
    }
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
      throw RPCError.field("token_env", .invalidArgument, "token_env must name a variable ending in _TOKEN (e.g. AIRTABLE_TOKEN), got \(tokenEnv)")
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
        throw RPCError.field("mappings[\(index)].external_field", .invalidArgument, "remote field '\(mapping.externalField)' is mapped twice")
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
    var job = SyncJob(
      name: request.name, baseID: request.baseID, tableID: request.tableID, tokenEnv: tokenEnv, direction: direction,
      mappings: mappings)
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

  static func message(_ run: SyncRunRecord) -> Herald_Sync_V1_Run {
    var message = Herald_Sync_V1_Run()
    message.id = run.id.lowercasedString
    message.jobID = run.jobID.lowercasedString
    switch run.status {
    case .running: message.status = .running
    case .succeeded: message.status = .succeeded
    case .failed: message.status = .failed
    case .aborted: message.status = .aborted
    case .interrupted: message.status = .interrupted
    }
    message.dryRun = run.dryRun
    message.full = run.full
    message.startedAt = Google_Protobuf_Timestamp(date: run.startedAt)
    if let finished = run.finishedAt { message.finishedAt = Google_Protobuf_Timestamp(date: finished) }
    message.cursorBefore = run.cursorBefore
    message.cursorAfter = run.status == .running ? run.checkpoint : run.cursorAfter
    message.phase = run.phase
    let counts = run.counts
    message.counts = .with {
      $0.recordsRead = Int64(counts.recordsRead)
      $0.created = Int64(counts.created)
      $0.updated = Int64(counts.updated)
      $0.unchanged = Int64(counts.unchanged)
      $0.duplicates = Int64(counts.duplicates)
      $0.softDeleted = Int64(counts.softDeleted)
      $0.pushed = Int64(counts.pushed)
      $0.conflicts = Int64(counts.conflicts)
      $0.errors = Int64(counts.errors)
      $0.apiCalls = Int64(counts.apiCalls)
      $0.rateLimited = Int64(counts.rateLimited)
      $0.cursorRestarts = Int64(counts.cursorRestarts)
    }
    message.errors = run.errors.map { error in
      .with {
        $0.recordID = error.recordID
        $0.field = error.field
        $0.message = error.message
      }
    }
    message.error = run.error
    message.resumedFrom = run.resumedFrom?.lowercasedString ?? ""
    message.planned = run.planned.map { change in
      .with {
        $0.recordID = change.recordID
        $0.action = change.action
        $0.subscriberID = change.subscriberID
        $0.fields = change.fields
      }
    }
    return message
  }

  static func conflict(_ row: PostgresRow) throws -> Herald_Sync_V1_Conflict {
    let (id, job, run, record, subscriber, field, base, local, remote, policy, resolution, created, resolved) = try row.decode(
      (UUID, UUID, UUID, String, UUID, String, String?, String?, String?, String, String, Date, Date?).self)
    var message = Herald_Sync_V1_Conflict()
    message.id = id.lowercasedString
    message.jobID = job.lowercasedString
    message.runID = run.lowercasedString
    message.recordID = record
    message.subscriberID = subscriber.lowercasedString
    message.subscriberField = field
    message.baseJson = base ?? "null"
    message.localJson = local ?? "null"
    message.remoteJson = remote ?? "null"
    message.policy = ConflictPolicy(rawValue: policy).map(Self.message) ?? .unspecified
    message.resolution = resolution
    message.createdAt = Google_Protobuf_Timestamp(date: created)
    if let resolved { message.resolvedAt = Google_Protobuf_Timestamp(date: resolved) }
    return message
  }
}

/// Settles a conflict kept for review: writes the chosen side's value to the other side and
/// brings the record's snapshot up to date.
struct ConflictResolver {
  let job: SyncJob
  let runs: RunManager
  let client: PostgresClient
  let logger: Logger

  func resolve(_ conflict: Herald_Sync_V1_Conflict, take: String) async throws {
    let connector = try runs.connector(for: job)
    let (mappings, _) = try MappingResolver.resolve(job, fields: try await connector.fields())
    guard let mapping = mappings.first(where: { $0.subscriberField == conflict.subscriberField }) else {
      throw RPCError(code: .failedPrecondition, message: "job '\(job.name)' no longer maps \(conflict.subscriberField)")
    }
    var lookup = Herald_Campaign_V1_LookupSubscribersRequest()
    lookup.ids = [conflict.subscriberID]
    guard let subscriber = try await runs.campaign().lookupSubscribers(lookup).subscribers.first else {
      throw RPCError(code: .failedPrecondition, message: "subscriber \(conflict.subscriberID) no longer exists")
    }
    let field = conflict.subscriberField
    let remote = JSONValue.parse(conflict.remoteJson) ?? .null
    var local = SubscriberField.local(subscriber, engagement: nil, field: field)
    var remoteValue = remote
    if take == "remote" {
      var update = Herald_Campaign_V1_UpdateSubscriberRequest()
      update.id = subscriber.id
      var attributes = JSONValue.parse(subscriber.attributesJson)?.object ?? [:]
      do {
        try FieldWriter.set(field, to: remote, in: &update, attributes: &attributes, source: "sync:\(job.name)")
      } catch {
        throw RPCError.field("take", .failedPrecondition, error.message)
      }
      local = SubscriberField.local(try await runs.campaign().updateSubscriber(update), engagement: nil, field: field)
    } else {
      let outcome = try await connector.update([(id: conflict.recordID, fields: [mapping.fieldID: FieldWriter.remote(local, for: mapping)])])
      if let refused = outcome.refused.first {
        throw RPCError(code: .failedPrecondition, message: "the table refused the local value: \(refused.reason)")
      }
      remoteValue = SubscriberField.remote(local, field: field)
    }
    let jobID = job.id!
    try await client.withTransaction(logger: logger) { connection in
      try await connection.query(
        """
        UPDATE sync.records SET remote_values = remote_values || jsonb_build_object(\(field)::text, \(RunStore.json(remoteValue))::jsonb),
          local_values = local_values || jsonb_build_object(\(field)::text, \(RunStore.json(local))::jsonb), synced_at = now()
        WHERE job_id = \(jobID) AND record_id = \(conflict.recordID)
        """, logger: logger)
      let settled = try await connection.query(
        """
        UPDATE sync.conflicts SET resolution = \(take), resolved_at = now()
        WHERE id = \(UUID(text: conflict.id)!) AND resolution = 'pending' RETURNING id
        """, logger: logger
      ).collect().count
      guard settled == 1 else { throw RPCError(code: .failedPrecondition, message: "conflict \(conflict.id) was settled meanwhile") }
    }
  }
}
