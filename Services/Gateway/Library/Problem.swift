import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import Logging
import HeraldServerKit
import NIOCore
import SwiftProtobuf

/// An RFC 9457 problem answer (`application/problem+json`), naming the failing field when known.
struct Problem: HTTPResponseError, Equatable {
  var status: HTTPResponse.Status
  var detail: String
  var field: String?

  var title: String { status.reasonPhrase }

  static func badRequest(_ detail: String, field: String? = nil) -> Problem { .init(status: .badRequest, detail: detail, field: field) }
  static func unauthorized(_ detail: String) -> Problem { .init(status: .unauthorized, detail: detail) }
  static func forbidden(_ detail: String) -> Problem { .init(status: .forbidden, detail: detail) }
  static func notFound(_ detail: String, field: String? = nil) -> Problem { .init(status: .notFound, detail: detail, field: field) }

  func response(from request: Request, context: some RequestContext) throws -> Response {
    var body: [String: Any] = [
      "type": "https://herald.dev/problems/\(status.code)", "title": title, "status": status.code, "detail": detail,
      "instance": request.uri.path,
    ]
    if let field { body["field"] = field }
    let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    var headers = HTTPFields()
    headers[.contentType] = "application/problem+json"
    if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }

  /// The one place where gRPC status codes become HTTP statuses.
  static func httpStatus(for code: RPCError.Code) -> HTTPResponse.Status {
    switch code {
    case .invalidArgument, .outOfRange: return .badRequest
    case .unauthenticated: return .unauthorized
    case .permissionDenied: return .forbidden
    case .notFound: return .notFound
    case .alreadyExists, .failedPrecondition, .aborted: return .conflict
    case .resourceExhausted: return .tooManyRequests
    case .unimplemented: return .notImplemented
    case .unavailable: return .serviceUnavailable
    case .deadlineExceeded: return .gatewayTimeout
    case .cancelled: return .init(code: 499, reasonPhrase: "Client Closed Request")
    default: return .internalServerError
    }
  }

  init(status: HTTPResponse.Status, detail: String, field: String? = nil) {
    self.status = status
    self.detail = detail
    self.field = field
  }

  init(_ error: RPCError, service: String) {
    let status = Self.httpStatus(for: error.code)
    switch error.code {
    case .unavailable, .deadlineExceeded:
      self.init(status: status, detail: "the \(service) service did not answer: \(error.message)")
    case .internalError, .unknown, .dataLoss:
      // Internal details stay in the service's log.
      self.init(status: status, detail: "the \(service) service failed; see its log")
    default:
      self.init(status: status, detail: error.message, field: error.field)
    }
  }
}

/// Turns every error into a problem answer, so no route leaks a bare error or an HTML page.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    do {
      return try await next(request, context)
    } catch let problem as Problem {
      throw problem
    } catch let error as any HTTPResponseError {
      throw Problem(status: error.status, detail: Self.detail(for: error, request: request))
    } catch let error as JSONDecodingError {
      throw Problem.badRequest("the request body is not valid: \(error)")
    } catch {
      context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
      throw Problem(status: .internalServerError, detail: "internal error; see the gateway log")
    }
  }

  static func detail(for error: any HTTPResponseError, request: Request) -> String {
    switch error.status {
    case .notFound: return "no route for \(request.method) \(request.uri.path)"
    case .methodNotAllowed: return "\(request.method) is not allowed on \(request.uri.path)"
    case .contentTooLarge: return "the request body is too large"
    default: return (error as? HTTPError)?.body ?? error.status.reasonPhrase
    }
  }
}
