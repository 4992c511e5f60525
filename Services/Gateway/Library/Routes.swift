import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldProtos
import HeraldServerKit
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus
import SwiftProtobuf
import Synchronization

/// `/health`, `/system/status`, `/metrics`, `/openapi.json`.
struct SystemController {
  let probe: StatusProbe
  let registry: PrometheusCollectorRegistry

  func addRoutes(public router: Router<GatewayRequestContext>, guarded: RouterGroup<GatewayRequestContext>) {
    router.get("health") { _, _ in ["status": "ok"] }
    guarded.get("system/status") { _, context in
      try context.require("read")
      return await probe.check()
    }
    guarded.get("metrics") { _, context in
      try context.require("read")
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    guarded.get("openapi.json") { _, context in
      try context.require("read")
      var headers = HTTPFields()
      headers[.contentType] = "application/json"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
  }
}

/// `/v1/api-keys`: create (the key is shown once), list, revoke. Admin only.
struct APIKeyController {
  let keys: APIKeyStore

  struct CreateRequest: Decodable {
    var name: String
    var scopes: [String]
  }

  struct Created: ResponseEncodable {
    var id: UUID
    var name: String
    var prefix: String
    var scopes: [String]
    var createdAt: Date
    var key: String
  }

  struct Listing: ResponseEncodable {
    var keys: [APIKeyRecord]
  }

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    group.post("api-keys") { request, context -> EditedResponse<Created> in
      try context.require("admin")
      let body = try await request.decode(as: CreateRequest.self, context: context)
      let name = body.name.trimmingCharacters(in: .whitespaces)
      guard !name.isEmpty, name.count <= 200 else { throw Problem.badRequest("name must be 1 to 200 characters", field: "name") }
      guard !body.scopes.isEmpty else { throw Problem.badRequest("scopes is empty", field: "scopes") }
      if let unknown = body.scopes.first(where: { !Scope.all.contains($0) }) {
        throw Problem.badRequest(
          "scope '\(unknown)' is not known (known: \(Scope.all.sorted().joined(separator: ", ")))", field: "scopes")
      }
      let (record, key) = try await keys.create(name: name, scopes: Array(Set(body.scopes)).sorted())
      return EditedResponse(
        status: .created,
        response: Created(
          id: record.id, name: record.name, prefix: record.prefix, scopes: record.scopes, createdAt: record.createdAt, key: key))
    }
    group.get("api-keys") { _, context in
      try context.require("admin")
      return Listing(keys: try await keys.list())
    }
    group.delete("api-keys/:id") { _, context -> HTTPResponse.Status in
      try context.require("admin")
      let text = try context.parameters.require("id")
      guard let id = UUID(text: text) else { throw Problem.badRequest("id '\(text)' is not a UUID", field: "id") }
      guard try await keys.revoke(id: id) else { throw Problem.notFound("no active API key has id \(text)", field: "id") }
      return .noContent
    }
  }
}

/// `/v1/subscribers`, relayed to the campaign service. Bodies use the proto3 JSON mapping with
/// snake_case names, so the REST and gRPC APIs describe the same fields.
struct SubscriberController {
  let campaign: Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
    group.post("subscribers") { request, context in
      try context.require("subscribers:write")
      let body = try await ProtoJSON.decode(Herald_Campaign_V1_CreateSubscriberRequest.self, from: request, context: context)
      let created = try await ProtoJSON.call("campaign") { try await campaign.createSubscriber(body) }
      return try ProtoJSON.response(created, status: .created)
    }
    group.post("subscribers/import") { request, context in
      try context.require("subscribers:write")
      let format = try Self.importFormat(request)
      var options = Herald_Campaign_V1_ImportOptions()
      options.onExisting = request.uri.queryParameters.get("on_existing") ?? ""
      options.consentSource = request.uri.queryParameters.get("consent_source") ?? ""
      options.listID = request.uri.queryParameters.get("list_id") ?? ""
      let body = request.body
      // A body the reader refuses (no header, say) ends the stream; its problem is the answer.
      let refused = Mutex<Problem?>(nil)
      let response = try await ProtoJSON.call("campaign", refused: refused) { [options] in
        // The body is read as it arrives and sent on in chunks: an import of any size runs in
        // flat memory.
        try await campaign.importSubscribers(options: .timeout(.seconds(3600))) { writer in
          var reader = ImportReader(format: format)
          func read(_ step: () throws -> [Herald_Campaign_V1_ImportRow]) throws -> [Herald_Campaign_V1_ImportRow] {
            do {
              return try step()
            } catch let problem as Problem {
              refused.withLock { $0 = problem }
              throw problem
            }
          }
          var message = Herald_Campaign_V1_ImportSubscribersRequest()
          message.options = options
          var sentOptions = false
          func send(_ rows: [Herald_Campaign_V1_ImportRow], force: Bool = false) async throws {
            message.rows.append(contentsOf: rows)
            guard message.rows.count >= 500 || (force && (!message.rows.isEmpty || !sentOptions)) else { return }
            try await writer.write(message)
            sentOptions = true
            message = Herald_Campaign_V1_ImportSubscribersRequest()
          }
          for try await buffer in body {
            try await send(try read { try reader.read(buffer) })
          }
          try await send(try read { try reader.finish() }, force: true)
        }
      }
      return try ProtoJSON.response(response)
    }
    group.get("subscribers") { request, context in
      try context.require("read")
      var body = Herald_Campaign_V1_ListSubscribersRequest()
      if let size = try request.int32Query("page_size") { body.pageSize = size }
      body.pageToken = request.uri.queryParameters.get("page_token") ?? ""
      let page = try await ProtoJSON.call("campaign") { [body] in try await campaign.listSubscribers(body) }
      return try ProtoJSON.response(page)
    }
    group.get("subscribers/:id") { _, context in
      try context.require("read")
      var body = Herald_Campaign_V1_GetSubscriberRequest()
      body.id = try context.parameters.require("id")
      let found = try await ProtoJSON.call("campaign") { [body] in try await campaign.getSubscriber(body) }
      return try ProtoJSON.response(found)
    }
    group.patch("subscribers/:id") { request, context in
      try context.require("subscribers:write")
      var body = try await ProtoJSON.decode(Herald_Campaign_V1_UpdateSubscriberRequest.self, from: request, context: context)
      let id = try context.parameters.require("id")
      guard body.id.isEmpty || body.id == id else {
        throw Problem.badRequest("the body's id '\(body.id)' differs from the path's '\(id)'", field: "id")
      }
      body.id = id
      let updated = try await ProtoJSON.call("campaign") { [body] in try await campaign.updateSubscriber(body) }
      return try ProtoJSON.response(updated)
    }
    group.post("subscribers/:id/unsubscribe") { request, context in
      try context.require("subscribers:write")
      struct Body: Decodable {
        var channel: String
        var source: String?
      }
      let input = try await request.decode(as: Body.self, context: context)
      var body = Herald_Campaign_V1_UnsubscribeRequest()
      body.id = try context.parameters.require("id")
      switch input.channel {
      case "email": body.channel = .email
      case "sms": body.channel = .sms
      case "all": body.channel = .all
      default: throw Problem.badRequest("channel '\(input.channel)' must be email, sms or all", field: "channel")
      }
      body.source = input.source ?? ""
      let updated = try await ProtoJSON.call("campaign") { [body] in try await campaign.unsubscribe(body) }
      return try ProtoJSON.response(updated)
    }
    group.get("subscribers/:id/export") { _, context in
      try context.require("read")
      var body = Herald_Campaign_V1_ExportSubscriberRequest()
      body.id = try context.parameters.require("id")
      let export = try await ProtoJSON.call("campaign") { [body] in try await campaign.exportSubscriber(body) }
      return try ProtoJSON.response(export)
    }
    group.delete("subscribers/:id") { _, context in
      try context.require("subscribers:write")
      var body = Herald_Campaign_V1_EraseSubscriberRequest()
      body.id = try context.parameters.require("id")
      let erased = try await ProtoJSON.call("campaign") { [body] in try await campaign.eraseSubscriber(body) }
      return try ProtoJSON.response(erased)
    }
  }
}

extension SubscriberController {
  /// CSV or JSON lines, from `?format=` or the Content-Type.
  static func importFormat(_ request: Request) throws -> ImportReader.Format {
    if let given = request.uri.queryParameters.get("format") {
      guard let format = ImportReader.Format(rawValue: String(given)) else {
        throw Problem.badRequest("format '\(given)' must be csv or ndjson", field: "format")
      }
      return format
    }
    let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    switch type {
    case "text/csv": return .csv
    case "application/x-ndjson", "application/jsonl", "application/jsonlines", "application/json-seq": return .ndjson
    default:
      throw Problem(
        status: .unsupportedMediaType,
        detail: "send text/csv or application/x-ndjson (or say ?format=csv|ndjson); got '\(type)'", field: "Content-Type")
    }
  }
}

enum ProtoJSON {
  static let maxBody = 1 << 20

  static func decode<M: SwiftProtobuf.Message>(
    _ type: M.Type, from request: Request, context: GatewayRequestContext, allowEmpty: Bool = false
  ) async throws -> M {
    var request = request
    let buffer = try await request.collectBody(upTo: maxBody)
    guard buffer.readableBytes > 0 else {
      if allowEmpty { return M() }
      throw Problem.badRequest("the request body is empty; send a JSON object")
    }
    let bytes = Array(buffer: buffer)
    do {
      _ = try JSONSerialization.jsonObject(with: Data(bytes))
    } catch {
      throw Problem.badRequest("the request body is not valid JSON: \((error as NSError).debugDescription)")
    }
    do {
      return try M(jsonUTF8Bytes: bytes)
    } catch let error as JSONDecodingError {
      switch error {
      case .unknownField(let name):
        throw Problem.badRequest("unknown field '\(name)'", field: name)
      default:
        throw Problem.badRequest("the request body is not valid JSON for \(M.protoMessageName): \(error)")
      }
    }
  }

  static func response<M: SwiftProtobuf.Message>(_ message: M, status: HTTPResponse.Status = .ok) throws -> Response {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    let bytes: [UInt8] = try message.jsonUTF8Bytes(options: options)
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
  }

  /// Runs a downstream call, turning its gRPC error into a problem answer (or into the problem
  /// the request's own reading stored in `refused`, which is what really went wrong).
  static func call<T: Sendable>(
    _ service: String, refused: borrowing Mutex<Problem?> = Mutex(nil), _ body: () async throws -> T
  ) async throws -> T {
    do {
      return try await body()
    } catch let error as RPCError {
      if let problem = refused.withLock({ $0 }) { throw problem }
      throw Problem(error, service: service)
    }
  }
}
