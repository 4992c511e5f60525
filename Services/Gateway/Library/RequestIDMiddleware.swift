import Foundation
import HTTPTypes
import HeraldServerKit
import Hummingbird
import Logging

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
