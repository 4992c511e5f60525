import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Segments: filters over attributes and consent (SPEC §2).
extension CampaignService {
  package func createSegment(
    request: Herald_Campaign_V1_CreateSegmentRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Segment {
    let conditions = try request.conditions.map { condition in
      SegmentCondition(field: condition.field, op: condition.op, valueJSON: condition.hasValue ? try condition.value.jsonString() : "")
    }
    return Self.message(
      try await store.createSegment(
        name: try Self.name(request.name), match: request.match.isEmpty ? "all" : request.match, conditions: conditions))
  }

  package func getSegment(request: Herald_Campaign_V1_GetSegmentRequest, context: ServerContext) async throws -> Herald_Campaign_V1_Segment
  {
    let id = try Self.uuid(request.id, field: "id")
    guard let segment = try await store.segments(id: id).first else { throw CampaignStore.notFound("segment", id) }
    return Self.message(segment)
  }

  package func listSegments(
    request: Herald_Campaign_V1_ListSegmentsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListSegmentsResponse {
    var response = Herald_Campaign_V1_ListSegmentsResponse()
    response.segments = try await store.segments().map(Self.message)
    return response
  }

  static func message(_ segment: SegmentRecord) -> Herald_Campaign_V1_Segment {
    var message = Herald_Campaign_V1_Segment()
    message.id = segment.id.lowercasedString
    message.name = segment.name
    message.match = segment.match
    message.conditions = segment.conditions.map { condition in
      var item = Herald_Campaign_V1_SegmentCondition()
      item.field = condition.field
      item.op = condition.op
      if !condition.valueJSON.isEmpty, let value = try? Google_Protobuf_Value(jsonString: condition.valueJSON) { item.value = value }
      return item
    }
    message.counts = Self.message(segment.counts)
    message.createdAt = Google_Protobuf_Timestamp(date: segment.createdAt)
    return message
  }
}
