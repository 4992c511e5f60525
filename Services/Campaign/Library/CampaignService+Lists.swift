import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Lists and their members (SPEC §2).
extension CampaignService {
  package func createList(
    request: Herald_Campaign_V1_CreateListRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_SubscriberList {
    let description = request.description_p.trimmingCharacters(in: .whitespacesAndNewlines)
    guard description.count <= 2000 else {
      throw RPCError.field("description", .invalidArgument, "description is longer than 2,000 characters")
    }
    return Self.message(try await store.createList(name: try Self.name(request.name), description: description))
  }

  package func getList(request: Herald_Campaign_V1_GetListRequest, context: ServerContext) async throws -> Herald_Campaign_V1_SubscriberList
  {
    Self.message(try await store.list(id: try Self.uuid(request.id, field: "id")))
  }

  package func listLists(
    request: Herald_Campaign_V1_ListListsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListListsResponse {
    var response = Herald_Campaign_V1_ListListsResponse()
    response.lists = try await store.lists().map(Self.message)
    return response
  }

  package func addListMembers(
    request: Herald_Campaign_V1_ListMembersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListMembersResponse {
    try await changeMembers(request, add: true)
  }

  package func removeListMembers(
    request: Herald_Campaign_V1_ListMembersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListMembersResponse {
    try await changeMembers(request, add: false)
  }

  private func changeMembers(_ request: Herald_Campaign_V1_ListMembersRequest, add: Bool) async throws
    -> Herald_Campaign_V1_ListMembersResponse
  {
    let list = try Self.uuid(request.listID, field: "list_id")
    guard !request.subscriberIds.isEmpty else { throw RPCError.field("subscriber_ids", .invalidArgument, "subscriber_ids is empty") }
    guard request.subscriberIds.count <= CampaignStore.maxMembersPerCall else {
      throw RPCError.field(
        "subscriber_ids", .invalidArgument,
        "subscriber_ids holds \(request.subscriberIds.count); at most \(CampaignStore.maxMembersPerCall) per call")
    }
    let ids = try request.subscriberIds.enumerated().map { index, text in try Self.uuid(text, field: "subscriber_ids[\(index)]") }
    var response = Herald_Campaign_V1_ListMembersResponse()
    response.changed = Int32(try await store.changeMembers(listID: list, subscriberIDs: ids, add: add))
    response.list = Self.message(try await store.list(id: list, field: "list_id"))
    return response
  }

  static func message(_ counts: AudienceCounts) -> Herald_Campaign_V1_ListCounts {
    var message = Herald_Campaign_V1_ListCounts()
    message.subscribers = counts.subscribers
    message.emailSubscribed = counts.emailSubscribed
    message.smsSubscribed = counts.smsSubscribed
    return message
  }

  static func message(_ list: ListRecord) -> Herald_Campaign_V1_SubscriberList {
    var message = Herald_Campaign_V1_SubscriberList()
    message.id = list.id.lowercasedString
    message.name = list.name
    message.description_p = list.description
    message.counts = Self.message(list.counts)
    message.createdAt = Google_Protobuf_Timestamp(date: list.createdAt)
    return message
  }
}
