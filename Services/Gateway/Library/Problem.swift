import Foundation
import GRPCCore
import HTTPTypes
import HeraldServerKit
import Hummingbird
import Logging
import NIOCore
import SwiftProtobuf

/// An RFC 9457 problem answer (`application/problem+json`), naming the failing field when known.
struct Problem: HTTPResponseError, Equatable {
  var status: HTTPResponse.Status
  var detail: String
  var field: String?
  /// The methods a path takes, for a 405.
  var allow: String?
  /// Seconds to wait, for a 429.
  var retryAfter: Int?

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
    if let allow { headers[.allow] = allow }
    if let retryAfter { headers[.retryAfter] = String(retryAfter) }
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
    self.allow = nil
    self.retryAfter = nil
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
