import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import Hummingbird
import SwiftProtobuf

/// `/v1/lists`, `/v1/segments`, `/v1/templates` and `/v1/campaigns`, relayed to the campaign
/// service. Bodies are the proto3 JSON of the gRPC requests (snake_case names); a path's `{id}`
/// fills the request's id (a body naming another id is refused).
struct CampaignController {
  typealias Client = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  let campaign: Client

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    let campaign = self.campaign
    let routes = ProtoRoutes(group: group, service: "campaign")

    // Lists
    routes.post("lists", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateListRequest) in
      try await campaign.createList(body)
    }
    routes.get("lists") { _ in try await campaign.listLists(.init()) }
    routes.get("lists/:id") { id in try await campaign.getList(.with { $0.id = id }) }
    routes.post("lists/:id/members", scope: "subscribers:write", id: { $0.listID = $1 }, current: { $0.listID }) {
      (body: Herald_Campaign_V1_ListMembersRequest) in try await campaign.addListMembers(body)
    }
    routes.post("lists/:id/members/remove", scope: "subscribers:write", id: { $0.listID = $1 }, current: { $0.listID }) {
      (body: Herald_Campaign_V1_ListMembersRequest) in try await campaign.removeListMembers(body)
    }

    // Segments
    routes.post("segments", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateSegmentRequest) in
      try await campaign.createSegment(body)
    }
    routes.get("segments") { _ in try await campaign.listSegments(.init()) }
    routes.get("segments/:id") { id in try await campaign.getSegment(.with { $0.id = id }) }

    // Templates
    routes.post("templates", scope: "templates:write", status: .created) { (body: Herald_Campaign_V1_CreateTemplateRequest) in
      try await campaign.createTemplate(body)
    }
    routes.get("templates") { _ in try await campaign.listTemplates(.init()) }
    routes.get("templates/:id") { id in try await campaign.getTemplate(.with { $0.id = id }) }
    routes.post("templates/:id/preview", scope: "read", id: { $0.templateID = $1 }, current: { $0.templateID }) {
      (body: Herald_Campaign_V1_PreviewTemplateRequest) in try await campaign.previewTemplate(body)
    }

    // Campaigns
    routes.post("campaigns", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateCampaignRequest) in
      try await campaign.createCampaign(body)
    }
    group.get("campaigns") { request, context in
      try context.require("read")
      let status = request.uri.queryParameters.get("status") ?? ""
      let listed = try await ProtoJSON.call("campaign") { try await campaign.listCampaigns(.with { $0.status = status }) }
      return try ProtoJSON.response(listed)
    }
    routes.get("campaigns/:id") { id in try await campaign.getCampaign(.with { $0.id = id }) }
    routes.post("campaigns/:id/schedule", scope: "campaigns:write", id: { $0.id = $1 }, current: { $0.id }) {
      (body: Herald_Campaign_V1_ScheduleCampaignRequest) in try await campaign.scheduleCampaign(body)
    }
    routes.get("campaigns/:id/analytics") { id in try await campaign.getCampaignAnalytics(.with { $0.campaignID = id }) }
    group.get("analytics/engagement") { request, context in
      try context.require("read")
      var body = Herald_Campaign_V1_ListEngagementRequest()
      for (name, keyPath) in [("page_size", \Herald_Campaign_V1_ListEngagementRequest.pageSize), ("min_score", \.minScore)] {
        if let value = try request.int32Query(name) { body[keyPath: keyPath] = value }
      }
      body.pageToken = request.uri.queryParameters.get("page_token") ?? ""
      let page = try await ProtoJSON.call("campaign") { [body] in try await campaign.listEngagement(body) }
      return try ProtoJSON.response(page)
    }
    let transitions: [(String, @Sendable (Herald_Campaign_V1_CampaignTransitionRequest) async throws -> Herald_Campaign_V1_Campaign)] = [
      ("send", { try await campaign.sendCampaign($0) }),
      ("pause", { try await campaign.pauseCampaign($0) }),
      ("resume", { try await campaign.resumeCampaign($0) }),
      ("cancel", { try await campaign.cancelCampaign($0) }),
    ]
    for (action, call) in transitions {
      routes.post("campaigns/:id/\(action)", scope: "campaigns:write", id: { $0.id = $1 }, current: { $0.id }, emptyBody: true, call)
    }
  }
}
