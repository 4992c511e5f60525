import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import PostgresNIO

/// Settles a conflict kept for review: writes the chosen side's value to the other side and
/// brings the record's snapshot up to date, on the connection that holds the job's lock (no run
/// rewrites the snapshot meanwhile).
struct ConflictResolver {
  let job: SyncJob
  let runs: RunManager
  let store: SyncStore

  /// `take` is `local` or `remote`. A job that cannot reach its table (no token, a mapping the
  /// table lacks) is FAILED_PRECONDITION, as are a field no longer mapped, a subscriber gone and
  /// a value the other side refuses.
  func resolve(_ conflict: SyncConflict, take: String, on connection: PostgresConnection) async throws -> SyncConflict {
    let connector = try runs.connector(for: job)
    let (mappings, _) = try MappingResolver.resolve(job, fields: try await connector.fields())
    guard let mapping = mappings.first(where: { $0.subscriberField == conflict.subscriberField }) else {
      throw RPCError(code: .failedPrecondition, message: "job '\(job.name)' no longer maps \(conflict.subscriberField)")
    }
    let subscriberID = conflict.subscriberID.lowercasedString
    var lookup = Herald_Campaign_V1_LookupSubscribersRequest()
    lookup.ids = [subscriberID]
    guard let subscriber = try await runs.campaign().lookupSubscribers(lookup).subscribers.first else {
      throw RPCError(code: .failedPrecondition, message: "subscriber \(subscriberID) no longer exists")
    }
    let field = conflict.subscriberField
    let remote = conflict.remoteJSON.flatMap(JSONValue.parse) ?? .null
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
      let outcome = try await connector.update([(id: conflict.recordID, fields: [mapping.fieldID: FieldWriter.remote(local, for: mapping)])]
      )
      if let refused = outcome.refused.first {
        throw RPCError(code: .failedPrecondition, message: "the table refused the local value: \(refused.reason)")
      }
      remoteValue = SubscriberField.remote(local, field: field)
    }
    guard let settled = try await store.settle(conflict, take: take, remote: remoteValue, local: local, on: connection) else {
      throw RPCError(code: .failedPrecondition, message: "conflict \(conflict.id.lowercasedString) was settled meanwhile")
    }
    return settled
  }
}
