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

    // Lists
    post(group, "lists", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateListRequest) in
      try await campaign.createList(body)
    }
    get(group, "lists") { _ in try await campaign.listLists(.init()) }
    get(group, "lists/:id") { id in try await campaign.getList(.with { $0.id = id }) }
    post(group, "lists/:id/members", scope: "subscribers:write", id: { $0.listID = $1 }, current: { $0.listID }) {
      (body: Herald_Campaign_V1_ListMembersRequest) in try await campaign.addListMembers(body)
    }
    post(group, "lists/:id/members/remove", scope: "subscribers:write", id: { $0.listID = $1 }, current: { $0.listID }) {
      (body: Herald_Campaign_V1_ListMembersRequest) in try await campaign.removeListMembers(body)
    }

    // Segments
    post(group, "segments", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateSegmentRequest) in
      try await campaign.createSegment(body)
    }
    get(group, "segments") { _ in try await campaign.listSegments(.init()) }
    get(group, "segments/:id") { id in try await campaign.getSegment(.with { $0.id = id }) }

    // Templates
    post(group, "templates", scope: "templates:write", status: .created) { (body: Herald_Campaign_V1_CreateTemplateRequest) in
      try await campaign.createTemplate(body)
    }
    get(group, "templates") { _ in try await campaign.listTemplates(.init()) }
    get(group, "templates/:id") { id in try await campaign.getTemplate(.with { $0.id = id }) }
    post(group, "templates/:id/preview", scope: "read", id: { $0.templateID = $1 }, current: { $0.templateID }) {
      (body: Herald_Campaign_V1_PreviewTemplateRequest) in try await campaign.previewTemplate(body)
    }

    // Campaigns
    post(group, "campaigns", scope: "campaigns:write", status: .created) { (body: Herald_Campaign_V1_CreateCampaignRequest) in
      try await campaign.createCampaign(body)
    }
    group.get("campaigns") { request, context in
      try context.require("read")
      let status = request.uri.queryParameters.get("status") ?? ""
      let listed = try await ProtoJSON.call("campaign") { try await campaign.listCampaigns(.with { $0.status = status }) }
      return try ProtoJSON.response(listed)
    }
    get(group, "campaigns/:id") { id in try await campaign.getCampaign(.with { $0.id = id }) }
    post(group, "campaigns/:id/schedule", scope: "campaigns:write", id: { $0.id = $1 }, current: { $0.id }) {
      (body: Herald_Campaign_V1_ScheduleCampaignRequest) in try await campaign.scheduleCampaign(body)
    }
    get(group, "campaigns/:id/analytics") { id in try await campaign.getCampaignAnalytics(.with { $0.campaignID = id }) }
    group.get("analytics/engagement") { request, context in
      try context.require("read")
      var body = Herald_Campaign_V1_ListEngagementRequest()
      for (name, keyPath) in [("page_size", \Herald_Campaign_V1_ListEngagementRequest.pageSize), ("min_score", \.minScore)] {
        guard let text = request.uri.queryParameters.get(name) else { continue }
        guard let value = Int32(text) else { throw Problem.badRequest("\(name) '\(text)' is not a number", field: name) }
        body[keyPath: keyPath] = value
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
      post(group, "campaigns/:id/\(action)", scope: "campaigns:write", id: { $0.id = $1 }, current: { $0.id }, emptyBody: true, call)
    }
  }

  /// `GET path` (scope read): the path's `:id`, if any, is handed to `call`.
  private func get<Out: SwiftProtobuf.Message>(
    _ group: RouterGroup<GatewayRequestContext>, _ path: RouterPath,
    _ call: @escaping @Sendable (String) async throws -> Out
  ) {
    group.get(path) { _, context in
      try context.require("read")
      let id = context.parameters.get("id") ?? ""
      return try ProtoJSON.response(try await ProtoJSON.call("campaign") { try await call(id) })
    }
  }

  /// `POST path` with a JSON body decoded as `In`. `id` copies the path's `:id` into the body;
  /// `emptyBody` allows calls that need nothing but the id.
  private func post<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message>(
    _ group: RouterGroup<GatewayRequestContext>, _ path: RouterPath, scope: String, status: HTTPResponse.Status = .ok,
    id: (@Sendable (inout In, String) -> Void)? = nil, current: (@Sendable (In) -> String)? = nil, emptyBody: Bool = false,
    _ call: @escaping @Sendable (In) async throws -> Out
  ) {
    group.post(path) { request, context in
      try context.require(scope)
      var body = try await ProtoJSON.decode(In.self, from: request, context: context, allowEmpty: emptyBody)
      if let id, let pathID = context.parameters.get("id") {
        let given = current?(body) ?? ""
        guard given.isEmpty || given == pathID else {
          throw Problem.badRequest("the body's id '\(given)' differs from the path's '\(pathID)'", field: "id")
        }
        id(&body, pathID)
      }
      let input = body
      return try ProtoJSON.response(try await ProtoJSON.call("campaign") { try await call(input) }, status: status)
    }
  }
}
