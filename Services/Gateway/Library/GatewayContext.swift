import Foundation
import HeraldServerKit
import HTTPTypes
import Hummingbird
import Logging

/// The request context: who is calling (once authenticated) and snake_case JSON coding.
struct GatewayRequestContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  var principal: APIKeyPrincipal?

  init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.principal = nil
  }

  var requestDecoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    decoder.dateDecodingStrategy = .iso8601
    return decoder
  }

  var responseEncoder: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }

  /// Throws 403 unless the caller's key holds `scope` (or `admin`).
  func require(_ scope: String) throws {
    guard let principal else { throw Problem.unauthorized("an API key is required") }
    guard principal.allows(scope) else {
      throw Problem.forbidden(
        "this call needs the scope '\(scope)'; the key '\(principal.name)' has \(principal.scopes.sorted().joined(separator: ", "))")
    }
  }
}

/// Gives each request an id (the caller's `X-Request-Id`, or Hummingbird's), returns it in the
/// answer and forwards it to every gRPC call the request makes.
struct RequestIDMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  static let header = HTTPField.Name("X-Request-Id")!

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    let supplied = request.headers[Self.header].flatMap { $0.isEmpty || $0.count > 128 ? nil : $0 }
    let id = supplied ?? context.id
    var response: Response
    do {
      response = try await RequestID.$current.withValue(id) { try await next(request, context) }
    } catch let error as any HTTPResponseError {
      response = try error.response(from: request, context: context)
    }
    response.headers[Self.header] = id
    return response
  }
}

/// Authenticates `Authorization: Bearer <key>` (or `X-API-Key: <key>`) on every route it guards.
struct APIKeyMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  let keys: APIKeyStore

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
