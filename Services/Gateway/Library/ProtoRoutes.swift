import Foundation
import HTTPTypes
import Hummingbird
import SwiftProtobuf

extension Request {
  /// The query parameter `name` as a number (nil when absent); a 400 naming it when it is not one.
  func int32Query(_ name: String) throws -> Int32? {
    guard let text = uri.queryParameters.get(name) else { return nil }
    guard let value = Int32(text) else { throw Problem.badRequest("\(name) '\(text)' is not a number", field: name) }
    return value
  }
}

/// Routes that relay to one back-end service: bodies are the proto3 JSON of the gRPC requests
/// (snake_case names), answers the proto3 JSON of the replies, gRPC errors problem+json naming
/// the service.
struct ProtoRoutes {
  let group: RouterGroup<GatewayRequestContext>
  let service: String

  /// `GET path` (scope read): the path's `:id`, if any, is handed to `call`.
  func get<Out: SwiftProtobuf.Message>(
    _ path: RouterPath, _ call: @escaping @Sendable (String) async throws -> Out
  ) {
    let service = self.service
    group.get(path) { _, context in
      try context.require("read")
      let id = context.parameters.get("id") ?? ""
      return try ProtoJSON.response(try await ProtoJSON.call(service) { try await call(id) })
    }
  }

  /// `POST path` with a JSON body decoded as `In`. `id` copies the path's `:id` into the body;
  /// `emptyBody` allows calls that need nothing but the id; `actor` puts the calling key's name
  /// into the body (who asked, for audits).
  func post<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message>(
    _ path: RouterPath, scope: String, status: HTTPResponse.Status = .ok,
    id: (@Sendable (inout In, String) -> Void)? = nil, current: (@Sendable (In) -> String)? = nil, emptyBody: Bool = false,
    actor: (@Sendable (inout In, String) -> Void)? = nil, _ call: @escaping @Sendable (In) async throws -> Out
  ) {
    withBody(.post, path, scope: scope, status: status, id: id, current: current, emptyBody: emptyBody, actor: actor, call)
  }

  /// `PATCH path`, as `post` (the body names the fields to change).
  func patch<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message>(
    _ path: RouterPath, scope: String, id: (@Sendable (inout In, String) -> Void)? = nil,
    current: (@Sendable (In) -> String)? = nil, _ call: @escaping @Sendable (In) async throws -> Out
  ) {
    withBody(.patch, path, scope: scope, status: .ok, id: id, current: current, emptyBody: false, actor: nil, call)
  }

  private func withBody<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message>(
    _ method: HTTPRequest.Method, _ path: RouterPath, scope: String, status: HTTPResponse.Status,
    id: (@Sendable (inout In, String) -> Void)?, current: (@Sendable (In) -> String)?, emptyBody: Bool,
    actor: (@Sendable (inout In, String) -> Void)?, _ call: @escaping @Sendable (In) async throws -> Out
  ) {
    let service = self.service
    group.on(path, method: method, use: { request, context -> Response in
      try context.require(scope)
      var body = try await ProtoJSON.decode(In.self, from: request, context: context, allowEmpty: emptyBody)
      if let id, let pathID = context.parameters.get("id") {
        let given = current?(body) ?? ""
        guard given.isEmpty || given == pathID else {
          throw Problem.badRequest("the body's id '\(given)' differs from the path's '\(pathID)'", field: "id")
        }
        id(&body, pathID)
      }
      if let actor, let name = context.principal?.name { actor(&body, name) }
      let input = body
      return try ProtoJSON.response(try await ProtoJSON.call(service) { try await call(input) }, status: status)
    })
  }

  /// `DELETE path` (scope given): the path's `:id` is handed to `call`; answers 204.
  func delete<Out: SwiftProtobuf.Message>(
    _ path: RouterPath, scope: String, _ call: @escaping @Sendable (String) async throws -> Out
  ) {
    let service = self.service
    group.delete(path) { _, context -> HTTPResponse.Status in
      try context.require(scope)
      let id = context.parameters.get("id") ?? ""
      _ = try await ProtoJSON.call(service) { try await call(id) }
      return .noContent
    }
  }
}
