import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Conflicts: listing them, and settling one kept for review under the job's lock.
extension SyncService {
  package func listConflicts(
    request: Herald_Sync_V1_ListConflictsRequest, context: ServerContext
  ) async throws -> Herald_Sync_V1_ListConflictsResponse {
    let job = try await job(request.jobID, field: "job_id")
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 100)")
    }
    let conflicts = try await store.conflicts(
      of: try job.storedID(), pendingOnly: request.pending, limit: request.pageSize == 0 ? 100 : Int(request.pageSize))
    var response = Herald_Sync_V1_ListConflictsResponse()
    response.conflicts = conflicts.map(Self.message)
    return response
  }

  /// Takes the local or the remote value of a conflict kept for review and writes it to the other
  /// side. A job that cannot reach its table as it stands (its token is not set, a mapping names a
  /// field the table lacks) is FAILED_PRECONDITION saying so; a table that does not answer,
  /// UNAVAILABLE.
  package func resolveConflict(request: Herald_Sync_V1_ResolveConflictRequest, context: ServerContext) async throws
    -> Herald_Sync_V1_Conflict
  {
    let id = try RPCError.uuid(request.id, field: "id")
    guard ["local", "remote"].contains(request.take) else {
      throw RPCError.field("take", .invalidArgument, "take must be 'local' or 'remote', got '\(request.take)'")
    }
    guard let conflict = try await store.conflict(id) else {
      throw RPCError.field("id", .notFound, "no conflict has id \(request.id)")
    }
    guard conflict.resolution == "pending" else {
      throw RPCError(code: .failedPrecondition, message: "conflict \(request.id) was already settled (\(conflict.resolution) won)")
    }
    guard let job = try await store.job(conflict.jobID) else {
      throw RPCError.field("id", .notFound, "the job of conflict \(request.id) was deleted")
    }
    let resolver = ConflictResolver(job: job, runs: runs, store: store)
    // Not while a run rewrites the record's snapshot.
    let settled = try await whileNoRun(job, "its conflicts cannot be resolved until it ends") { connection in
      try await resolver.resolve(conflict, take: request.take, on: connection)
    }
    return Self.message(settled)
  }

  static func message(_ conflict: SyncConflict) -> Herald_Sync_V1_Conflict {
    var message = Herald_Sync_V1_Conflict()
    message.id = conflict.id.lowercasedString
    message.jobID = conflict.jobID.lowercasedString
    message.runID = conflict.runID.lowercasedString
    message.recordID = conflict.recordID
    message.subscriberID = conflict.subscriberID.lowercasedString
    message.subscriberField = conflict.subscriberField
    message.baseJson = conflict.baseJSON ?? "null"
    message.localJson = conflict.localJSON ?? "null"
    message.remoteJson = conflict.remoteJSON ?? "null"
    message.policy = conflict.policy.map(Self.message) ?? .unspecified
    message.resolution = conflict.resolution
    message.createdAt = Google_Protobuf_Timestamp(date: conflict.createdAt)
    if let resolved = conflict.resolvedAt { message.resolvedAt = Google_Protobuf_Timestamp(date: resolved) }
    return message
  }
}
