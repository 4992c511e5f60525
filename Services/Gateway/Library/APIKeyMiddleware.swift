import Foundation
import HTTPTypes
import HeraldServerKit
import Hummingbird
import Logging

/// Authenticates `Authorization: Bearer <key>` (or `X-API-Key: <key>`) on every route it guards.
struct APIKeyMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  let keys: GatewayStore

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    let authorization = request.headers[.authorization]
    let token: String?
    if let authorization, authorization.lowercased().hasPrefix("bearer ") {
      token = String(authorization.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
    } else if let header = request.headers[HTTPField.Name("X-API-Key")!] {
      token = header.trimmingCharacters(in: .whitespaces)
    } else {
      token = nil
    }
    guard let token, !token.isEmpty else {
      throw Problem.unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    }
    guard let principal = try await keys.authenticate(token) else {
      throw Problem.unauthorized("the API key is not valid or has been revoked")
    }
    var context = context
    context.principal = principal
    context.logger[metadataKey: "api_key"] = .string(principal.name)
    return try await next(request, context)
  }
}
