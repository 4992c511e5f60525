import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// The unsubscribe links of campaign e-mail (SPEC §10), behind the gateway's public `/u/{token}`
/// routes: the token is checked by its signature alone; a token that is not genuine, or names a
/// subscriber that is gone, gets the same answer, which says nothing more.
extension CampaignService {
  package func describeUnsubscribeLink(
    request: Herald_Campaign_V1_UnsubscribeLinkRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_UnsubscribeLinkState {
    let token = try verified(request.token)
    guard let record = try await store.subscriber(id: token.subscriber), record.status != "erased" else {
      throw Self.invalidLink
    }
    return Self.state(record, channel: token.channel)
  }

  package func unsubscribeByLink(
    request: Herald_Campaign_V1_UnsubscribeLinkRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_UnsubscribeLinkState {
    let token = try verified(request.token)
    let channels: [String]
    switch request.channel {
    case .unspecified: channels = [token.channel]
    case .email: channels = ["email"]
    case .sms: channels = ["sms"]
    case .whatsapp: channels = ["whatsapp"]
    case .push: channels = ["push"]
    case .all: channels = ["email", "sms", "whatsapp", "push"]
    case .UNRECOGNIZED: throw RPCError.field("channel", .invalidArgument, "channel must be email, sms, whatsapp, push or all")
    }
    let record = try await store.updateSubscriber(
      id: token.subscriber, retiringPushTokens: channels.contains("push") ? "unsubscribed" : nil,
      pushOnlyIfTokens: channels.count > 1
    ) { record, now in
      // Idempotent: consent already withdrawn makes no event. An erased subscriber has none.
      guard record.status != "erased" else { return [] }
      return channels.compactMap { channel in
        var event = Self.withdraw(channel: channel, of: &record, source: "list-unsubscribe", now: now)
        event?.campaignID = token.campaign
        return event
      }
    }
    guard let record, record.status != "erased" else { throw Self.invalidLink }
    return Self.state(record, channel: token.channel)
  }

  static let invalidLink = RPCError(code: .invalidArgument, message: "this unsubscribe link is not valid")

  func verified(_ text: String) throws -> UnsubscribeToken {
    guard let token = links.verify(text) else { throw Self.invalidLink }
    return token
  }

  static func state(_ record: SubscriberRecord, channel: String) -> Herald_Campaign_V1_UnsubscribeLinkState {
    var state = Herald_Campaign_V1_UnsubscribeLinkState()
    state.channel = channel
    state.emailSubscribed = record.emailConsent.subscribed
    state.smsSubscribed = record.smsConsent.subscribed
    state.emailOnFile = record.email != nil
    state.phoneOnFile = record.phone != nil
    if let email = record.email, let at = email.lastIndex(of: "@") {
      state.maskedEmail = "\(email.prefix(1))***\(email[at...])"
    }
    return state
  }
}
