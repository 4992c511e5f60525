import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldProtos
import Hummingbird
import SwiftProtobuf

/// `/v1/sync`: sync jobs, their runs (started, followed while they go, listed), and conflicts
/// (listed, resolved). Relayed to the sync service.
struct SyncController {
  typealias Client = Herald_Sync_V1_SyncService.Client<HTTP2ClientTransport.Posix>
  let sync: Client

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    let sync = self.sync
    let routes = ProtoRoutes(group: group, service: "sync")

    routes.get("sync/jobs") { _ in try await sync.listJobs(.init()) }
    routes.post("sync/jobs", scope: "sync:write", status: .created) { (body: Herald_Sync_V1_CreateJobRequest) in
      try await sync.createJob(body)
    }
    routes.get("sync/jobs/:id") { id in try await sync.getJob(.with { $0.id = id }) }
    routes.patch("sync/jobs/:id", scope: "sync:write", id: { $0.id = $1 }, current: { $0.id }) { (body: Herald_Sync_V1_UpdateJobRequest) in
      try await sync.updateJob(body)
    }
    routes.delete("sync/jobs/:id", scope: "sync:write") { id in try await sync.deleteJob(.with { $0.id = id }) }
    // Body (optional): {"dry_run": true, "full": true}. 202: the run goes on in the background.
    routes.post(
      "sync/jobs/:id/runs", scope: "sync:write", status: .accepted, id: { $0.jobID = $1 }, current: { $0.jobID }, emptyBody: true
    ) { (body: Herald_Sync_V1_StartRunRequest) in
      try await sync.startRun(body)
    }
    group.get("sync/jobs/:id/runs") { request, context in
      try context.require("read")
      let id = context.parameters.get("id") ?? ""
      let size = try request.int32Query("page_size") ?? 0
      return try ProtoJSON.response(
        try await ProtoJSON.call("sync") {
          try await sync.listRuns(.with {
            $0.jobID = id
            $0.pageSize = size
          })
        })
    }
    routes.get("sync/runs/:id") { id in try await sync.getRun(.with { $0.id = id }) }
    group.get("sync/jobs/:id/conflicts") { request, context in
      try context.require("read")
      let id = context.parameters.get("id") ?? ""
      let size = try request.int32Query("page_size") ?? 0
      let pending = request.uri.queryParameters.get("pending") == "true"
      return try ProtoJSON.response(
        try await ProtoJSON.call("sync") {
          try await sync.listConflicts(.with {
            $0.jobID = id
            $0.pageSize = size
            $0.pendingOnly = pending
          })
        })
    }
    // Body: {"take": "local"} or {"take": "remote"}.
    routes.post("sync/conflicts/:id/resolve", scope: "sync:write", id: { $0.id = $1 }, current: { $0.id }) {
      (body: Herald_Sync_V1_ResolveConflictRequest) in
      try await sync.resolveConflict(body)
    }
  }
}
