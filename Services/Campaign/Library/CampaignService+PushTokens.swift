import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Push tokens: what subscribers' apps register, and their retirement.
extension CampaignService {
  package func registerPushToken(
    request: Herald_Campaign_V1_RegisterPushTokenRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_PushToken {
    let subscriber = try RPCError.uuid(request.subscriberID, field: "subscriber_id")
    guard ["apns", "fcm"].contains(request.platform) else {
      throw RPCError.field("platform", .invalidArgument, "platform must be apns or fcm")
    }
    guard request.token.utf8.count <= 4096, request.token.wholeMatch(of: /[A-Za-z0-9:_-]{16,}/) != nil else {
      throw RPCError.field(
        "token", .invalidArgument,
        "token must be the device token the platform gave: 16 to 4,096 letters, digits, colons, dashes or underscores")
    }
    guard request.appID.wholeMatch(of: /[A-Za-z0-9._-]{0,255}/) != nil else {
      throw RPCError.field("app_id", .invalidArgument, "app_id must be a bundle id or package name such as com.example.shop")
    }
    let source = request.resubscribeSource.trimmingCharacters(in: .whitespacesAndNewlines)
    guard source.count <= 200, !source.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
      throw RPCError.field("resubscribe_source", .invalidArgument, "resubscribe_source must be one line of at most 200 characters")
    }
    switch try await store.registerPushToken(
      subscriber: subscriber, platform: request.platform, token: request.token, appID: request.appID,
      resubscribeSource: source.isEmpty ? nil : source)
    {
    case .registered(let record): return Self.message(record)
    case .noSubscriber: throw RPCError.field("subscriber_id", .notFound, "no subscriber has id \(subscriber.lowercasedString)")
    case .notActive(let status):
      throw RPCError.field(
        "subscriber_id", .failedPrecondition, "subscriber \(subscriber.lowercasedString) is \(status): it takes no push tokens")
    }
  }

  package func retirePushToken(
    request: Herald_Campaign_V1_RetirePushTokenRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_PushToken {
    let subscriber = try RPCError.uuid(request.subscriberID, field: "subscriber_id")
    let token = try RPCError.uuid(request.tokenID, field: "token_id")
    guard let record = try await store.retirePushToken(subscriber: subscriber, token: token, reason: "retired") else {
      throw RPCError.field(
        "token_id", .notFound, "subscriber \(subscriber.lowercasedString) has no push token \(token.lowercasedString)")
    }
    return Self.message(record)
  }

  static func message(_ record: PushTokenRecord) -> Herald_Campaign_V1_PushToken {
    var message = Herald_Campaign_V1_PushToken()
    message.id = record.id.lowercasedString
    message.platform = record.platform
    message.token = record.token
    message.appID = record.appID
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    message.lastSeenAt = Google_Protobuf_Timestamp(date: record.lastSeenAt)
    if let retired = record.retiredAt { message.retiredAt = Google_Protobuf_Timestamp(date: retired) }
    message.retiredReason = record.retiredReason ?? ""
    return message
  }
}
