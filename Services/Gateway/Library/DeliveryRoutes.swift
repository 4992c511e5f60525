import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import Hummingbird
import NIOCore
import SwiftProtobuf

/// `/v1/providers`, `/v1/messages`, `/v1/dead-letters`, `/v1/suppressions`, `/v1/warmup-schedules`,
/// `/v1/queue` and `/v1/campaigns/{id}/spend`, relayed to the delivery service.
struct DeliveryController {
  typealias Client = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>
  let delivery: Client

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    let delivery = self.delivery
    let routes = ProtoRoutes(group: group, service: "delivery")

    routes.get("providers") { _ in try await delivery.listProviders(.init()) }
    routes.post("providers", scope: "delivery:write") { (body: Herald_Delivery_V1_Provider) in
      try await delivery.putProvider(body)
    }
    routes.delete("providers/:id", scope: "delivery:write") { name in try await delivery.deleteProvider(.with { $0.name = name }) }

    // A transactional message (no campaign): queued for the workers, once per idempotency key.
    routes.post("messages", scope: "delivery:write", status: .accepted) { (body: Herald_Delivery_V1_OutboundMessage) in
      let response = try await delivery.enqueueMessages(.with { $0.messages = [body] })
      return try response.results.first ?? { throw RPCError(code: .internalError, message: "delivery answered no result") }()
    }
    group.get("messages") { request, context in
      try context.require("read")
      let query = request.uri.queryParameters
      var body = Herald_Delivery_V1_ListMessagesRequest()
      body.status = query.get("status") ?? ""
      body.campaignID = query.get("campaign_id") ?? ""
      body.cursor = query.get("cursor") ?? ""
      if let limit = try request.int32Query("limit") { body.limit = limit }
      let page = try await ProtoJSON.call("delivery") { [body] in try await delivery.listMessages(body) }
      return try ProtoJSON.response(page)
    }
    routes.get("messages/:id") { id in try await delivery.getMessage(.with { $0.id = id }) }
    routes.get("dead-letters") { _ in try await delivery.listMessages(.with { $0.status = "dead"; $0.limit = 1000 }) }
    routes.post("messages/requeue", scope: "delivery:write") { (body: Herald_Delivery_V1_RequeueMessagesRequest) in
      try await delivery.requeueMessages(body)
    }
    routes.get("queue") { _ in try await delivery.getQueueStats(.init()) }

    routes.get("suppressions") { _ in try await delivery.listSuppressions(.with { $0.limit = 1000 }) }
    routes.post("suppressions", scope: "delivery:write", status: .created) { (body: Herald_Delivery_V1_Suppression) in
      try await delivery.addSuppression(body)
    }
    routes.delete("suppressions/:id", scope: "delivery:write") { address in
      let removed = try await delivery.removeSuppression(.with { $0.address = address })
      guard removed.removed else { throw RPCError(code: .notFound, message: "\(address) is not on the suppression list") }
      return removed
    }

    routes.get("campaigns/:id/spend") { id in try await delivery.getSpendCap(.with { $0.campaignID = id }) }
    routes.get("warmup-schedules") { _ in try await delivery.listWarmupSchedules(.init()) }
    routes.post("warmup-schedules", scope: "delivery:write") { (body: Herald_Delivery_V1_WarmupSchedule) in
      try await delivery.putWarmupSchedule(body)
    }
  }

  /// `POST /v1/webhooks/{provider}`: no API key; the body is forwarded unchanged with its
  /// `X-Herald-Signature` header, and the delivery service verifies it against the provider's
  /// webhook secret (401 when it does not match).
  func addWebhookRoute(to router: Router<GatewayRequestContext>) {
    let delivery = self.delivery
    router.post("v1/webhooks/:provider") { request, context in
      var request = request
      let body = try await request.collectBody(upTo: ProtoJSON.maxBody)
      var forwarded = Herald_Delivery_V1_IngestProviderWebhookRequest()
      forwarded.provider = context.parameters.get("provider") ?? ""
      forwarded.body = Data(body.readableBytesView)
      forwarded.signature = request.headers[HTTPField.Name("X-Herald-Signature")!] ?? ""
      let result = try await ProtoJSON.call("delivery") { [forwarded] in try await delivery.ingestProviderWebhook(forwarded) }
      return try ProtoJSON.response(result)
    }
  }
}
