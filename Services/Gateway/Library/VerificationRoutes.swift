import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import HeraldServerKit
import Hummingbird
import SwiftProtobuf

/// `/v1/verification`: runs on demand, stored reports, tracked issues, and repairs (proposed,
/// reviewed, run dry or for real). Relayed to the verification service; who asks is the API key's
/// name, recorded in the repair audit.
struct VerificationController {
  typealias Client = Herald_Verification_V1_VerificationService.Client<HTTP2ClientTransport.Posix>
  let verification: Client

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    let verification = self.verification
    let routes = ProtoRoutes(group: group, service: "verification")

    // Body (optional): {"component": "schema"|"ledger"|"data"|"sync"|"health", "schemas": [...]}.
    routes.post("verification/runs", scope: "verification:write", emptyBody: true) { (body: Herald_Verification_V1_RunVerificationRequest) in
      try await verification.runVerification(body, options: .timeout(.seconds(300)))
    }
    group.get("verification/reports") { request, context in
      try context.require("read")
      let size = try request.int32Query("page_size") ?? 0
      return try ProtoJSON.response(try await ProtoJSON.call("verification") { try await verification.listReports(.with { $0.pageSize = size }) })
    }
    // {id} may be "latest".
    routes.get("verification/reports/:id") { id in try await verification.getReport(.with { $0.id = id }) }
    group.get("verification/issues") { request, context in
      try context.require("read")
      let all = request.uri.queryParameters.get("include_resolved") == "true"
      return try ProtoJSON.response(
        try await ProtoJSON.call("verification") { try await verification.listIssues(.with { $0.includeResolved = all }) })
    }
    // {id} is the issue's fingerprint.
    routes.post(
      "verification/issues/:id/repairs", scope: "verification:write", status: .created, id: { $0.fingerprint = $1 },
      current: { $0.fingerprint }, emptyBody: true, actor: { $0.requestedBy = $1 }
    ) { (body: Herald_Verification_V1_ProposeRepairRequest) in
      try await verification.proposeRepair(body)
    }
    group.get("verification/repairs") { request, context in
      try context.require("read")
      let pending = request.uri.queryParameters.get("pending_review") == "true"
      return try ProtoJSON.response(
        try await ProtoJSON.call("verification") { try await verification.listRepairs(.with { $0.pendingReview = pending }) })
    }
    // Body (optional): {"apply": true}; without it a dry run.
    routes.post(
      "verification/repairs/:id/run", scope: "verification:write", id: { $0.id = $1 }, current: { $0.id }, emptyBody: true,
      actor: { $0.requestedBy = $1 }
    ) { (body: Herald_Verification_V1_RunRepairRequest) in
      try await verification.runRepair(body, options: .timeout(.seconds(300)))
    }
    // Body: {"approve": true|false, "note": "…"}.
    routes.post(
      "verification/repairs/:id/review", scope: "verification:write", id: { $0.id = $1 }, current: { $0.id },
      actor: { $0.reviewer = $1 }
    ) { (body: Herald_Verification_V1_ReviewRepairRequest) in
      try await verification.reviewRepair(body)
    }
  }
}
