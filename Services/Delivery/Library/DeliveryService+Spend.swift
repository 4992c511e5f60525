import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Spend caps of campaigns, and warm-up schedules of sending identities.
extension DeliveryService {
  package func getSpendCap(
    request: Herald_Delivery_V1_GetSpendCapRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_SpendCap {
    let campaign = try RPCError.uuid(request.campaignID, field: "campaign_id")
    guard let record = try await store.spendCap(campaign) else {
      throw RPCError.field("campaign_id", .notFound, "campaign \(request.campaignID) has no spend cap")
    }
    var cap = Herald_Delivery_V1_SpendCap()
    cap.campaignID = campaign.lowercasedString
    cap.budgetCents = record.budgetCents
    cap.spentCents = record.spentCents
    return cap
  }

  /// The sending identity is stored trimmed of white space and line breaks; the answer is the
  /// schedule as stored, with where its identity stands today.
  package func putWarmupSchedule(
    request: Herald_Delivery_V1_WarmupSchedule, context: ServerContext
  ) async throws -> Herald_Delivery_V1_WarmupSchedule {
    let schedule = try WarmupScheduleConfig(validating: request)
    try await store.putSchedule(schedule)
    guard let stored = try await store.warmupSchedules(identity: schedule.sendingIdentity).first else {
      throw RPCError(code: .internalError, message: "the warm-up schedule of \(schedule.sendingIdentity) was written but is not stored")
    }
    return Self.schedule(stored)
  }

  package func listWarmupSchedules(
    request: Herald_Delivery_V1_ListWarmupSchedulesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListWarmupSchedulesResponse {
    var response = Herald_Delivery_V1_ListWarmupSchedulesResponse()
    response.schedules = try await store.warmupSchedules().map(Self.schedule)
    return response
  }

  static func schedule(_ record: WarmupScheduleRecord) -> Herald_Delivery_V1_WarmupSchedule {
    var schedule = Herald_Delivery_V1_WarmupSchedule()
    schedule.sendingIdentity = record.sendingIdentity
    schedule.dailyCaps = record.dailyCaps
    if let started = record.startedOn { schedule.startedOn = Google_Protobuf_Timestamp(date: started) }
    schedule.today = Int32(record.today)
    schedule.sentToday = record.sentToday
    return schedule
  }
}
