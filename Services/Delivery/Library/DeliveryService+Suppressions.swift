import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// The suppression list: addresses never sent to (hard bounces, complaints, and those added by
/// hand).
extension DeliveryService {
  package func listSuppressions(
    request: Herald_Delivery_V1_ListSuppressionsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListSuppressionsResponse {
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    let limit = request.limit == 0 ? 100 : Int(request.limit)
    let records = try await store.suppressions(after: request.cursor.isEmpty ? nil : request.cursor, limit: limit)
    var response = Herald_Delivery_V1_ListSuppressionsResponse()
    response.suppressions = records.map { record in
      var suppression = Herald_Delivery_V1_Suppression()
      suppression.address = record.address
      suppression.reason = record.reason
      suppression.detail = record.detail
      suppression.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
      return suppression
    }
    if records.count == limit, let last = records.last { response.nextCursor = last.address }
    return response
  }

  package func addSuppression(
    request: Herald_Delivery_V1_Suppression, context: ServerContext
  ) async throws -> Herald_Delivery_V1_Suppression {
    let address = Self.suppressionAddress(request.address)
    guard !address.isEmpty, address.count <= 320 else {
      throw RPCError.field("address", .invalidArgument, "address must be an e-mail address or phone number")
    }
    let reason = request.reason.isEmpty ? "manual" : request.reason
    guard ["hard_bounce", "complaint", "manual", "sms_keyword"].contains(reason) else {
      throw RPCError.field("reason", .invalidArgument, "reason must be hard_bounce, complaint, manual or sms_keyword")
    }
    var suppression = request
    suppression.address = address
    suppression.reason = reason
    suppression.createdAt = Google_Protobuf_Timestamp(
      date: try await store.addSuppression(address: address, reason: reason, detail: request.detail))
    return suppression
  }

  package func removeSuppression(
    request: Herald_Delivery_V1_RemoveSuppressionRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_RemoveSuppressionResponse {
    var response = Herald_Delivery_V1_RemoveSuppressionResponse()
    response.removed = try await store.removeSuppression(address: Self.suppressionAddress(request.address))
    return response
  }

  /// An address as the list holds it (`delivery.suppression_key`): trimmed of white space and
  /// line breaks, lower-cased, but for a push token (`push:<token>`, whose case counts) and a
  /// WhatsApp number (`whatsapp:+<number>`, kept apart from the number's texts).
  static func suppressionAddress(_ text: String) -> String {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.hasPrefix("push:") { return trimmed }
    return trimmed.lowercased()
  }
}
