import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import SwiftProtobuf

/// The delivery service as the campaign process uses it: the relay's `MessageSink`
/// (`EnqueueMessages`), the analytics feed's `DeliveryEventSource` (`ListDeliveryEvents`), the inbound
/// feed's `InboundSource` (`ListInboundFeed`, `LinkInboundSubscribers`) and the
/// hold sync's `CampaignHoldSink` (`HoldCampaignMessages`).
package struct DeliverySink: MessageSink, DeliveryEventSource, CampaignHoldSink {
  let client: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  package init(client: GRPCClient<HTTP2ClientTransport.Posix>) {
    self.client = Herald_Delivery_V1_DeliveryService.Client(wrapping: client)
  }

  package func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse {
    try await client.enqueueMessages(request)
  }

  package func holdCampaignMessages(
    _ request: Herald_Delivery_V1_HoldCampaignMessagesRequest
  ) async throws -> Herald_Delivery_V1_HoldCampaignMessagesResponse {
    try await client.holdCampaignMessages(request)
  }

  package func events(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListDeliveryEventsResponse {
    try await client.listDeliveryEvents(
      .with {
        $0.cursor = cursor
        $0.limit = limit
      })
  }
}

extension DeliverySink: InboundSource {
  package func inbound(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListInboundFeedResponse {
    try await client.listInboundFeed(
      .with {
        $0.cursor = cursor
        $0.limit = limit
      })
  }

  package func link(_ links: [Herald_Delivery_V1_InboundSubscriberLink]) async throws {
    _ = try await client.linkInboundSubscribers(.with { $0.links = links })
  }
}

extension DeliverySink {
  /// A channel's name as delivery's enum.
  static func channel(_ name: String) -> Herald_Delivery_V1_Channel {
    switch name {
    case "email": .email
    case "push": .push
    case "whatsapp": .whatsapp
    default: .sms
    }
  }
}

/// Which channels delivery can send today: a push or WhatsApp campaign is refused at send while
/// no enabled provider serves its channel (SPEC §2), instead of waiting in the queue unsent.
package protocol ProviderDirectory: Sendable {
  func channelsWithProviders() async throws -> Set<String>
}

extension DeliverySink: ProviderDirectory {
  package func channelsWithProviders() async throws -> Set<String> {
    let providers = try await client.listProviders(.init()).providers
    return Set(
      providers.filter { !$0.disabled }.compactMap { provider -> String? in
        switch provider.channel {
        case .email: "email"
        case .sms: "sms"
        case .push: "push"
        case .whatsapp: "whatsapp"
        case .unspecified, .UNRECOGNIZED: nil
        }
      })
  }
}
