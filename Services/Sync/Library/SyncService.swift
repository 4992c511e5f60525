import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.sync.v1.SyncService`.
package struct SyncService: Herald_Sync_V1_SyncService.SimpleServiceProtocol {
  /// Subscriber fields a remote field may map to; `attributes.<name>` maps to one attribute.
  package static let subscriberFields: Set<String> = [
    "email", "phone", "first_name", "last_name", "email_subscribed", "sms_subscribed", "status",
  ]
  let store: any JobStore

  package init(store: any JobStore) {
    self.store = store
  }

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

  package func listJobs(request: Herald_Sync_V1_ListJobsRequest, context: ServerContext) async throws -> Herald_Sync_V1_ListJobsResponse {
    var response = Herald_Sync_V1_ListJobsResponse()
    response.jobs = try await store.all().map(Self.message)
    return response
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
    for (index, mapping) in request.mappings.enumerated() {
      guard !mapping.externalField.isEmpty else {
        throw RPCError.field("mappings[\(index)].external_field", .invalidArgument, "mappings[\(index)].external_field is empty")
      }
      let local = mapping.subscriberField
      let isAttribute = local.hasPrefix("attributes.") && local.count > "attributes.".count
      guard subscriberFields.contains(local) || isAttribute else {
        throw RPCError.field(
          "mappings[\(index)].subscriber_field", .invalidArgument,
          "mappings[\(index)].subscriber_field '\(local)' is not one of \(subscriberFields.sorted().joined(separator: ", ")) or attributes.<name>")
      }
      guard externals.insert(mapping.externalField).inserted else {
        throw RPCError.field("mappings[\(index)].external_field", .invalidArgument, "remote field '\(mapping.externalField)' is mapped twice")
      }
      guard locals.insert(local).inserted else {
        throw RPCError.field("mappings[\(index)].subscriber_field", .invalidArgument, "subscriber field '\(local)' is mapped twice")
      }
    }
    return SyncJob(
      name: request.name, baseID: request.baseID, tableID: request.tableID, tokenEnv: tokenEnv, direction: direction,
      mappings: request.mappings.map { .init(externalField: $0.externalField, subscriberField: $0.subscriberField) })
  }

  static func message(_ job: SyncJob) -> Herald_Sync_V1_Job {
    var message = Herald_Sync_V1_Job()
    message.id = job.id?.uuidString.lowercased() ?? ""
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
      return message
    }
    if let createdAt = job.createdAt { message.createdAt = Google_Protobuf_Timestamp(date: createdAt) }
    return message
  }
}
