import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Runs: starting one (in the background, one at a time per job) and reading their history.
extension SyncService {
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
    guard let run = try await store.run(id) else {
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
    response.runs = try await store.runs(of: try job.storedID(), limit: request.pageSize == 0 ? 20 : Int(request.pageSize))
      .map(Self.message)
    return response
  }

  /// A run as the API shows it: a running run's cursor_after is its checkpoint so far.
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
}
