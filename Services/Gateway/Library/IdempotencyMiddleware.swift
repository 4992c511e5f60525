import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// `Idempotency-Key` on creating calls (POST and PATCH), in the manner of the IETF
/// httpapi-idempotency-key draft and Stripe: the first request with a key runs and its answer
/// (status, content type, body) is stored per API key; a retry with the same key and the same
/// request gets the stored answer again (`Idempotent-Replayed: true`) without running twice. The
/// same key with a different request is refused (422), as is a retry while the first is still
/// running (409). Answers of 5xx are not stored, so a failed call can be retried. Keys expire
/// after 24 hours.
struct IdempotencyMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  static let header = HTTPField.Name("Idempotency-Key")!
  static let replayed = HTTPField.Name("Idempotent-Replayed")!

  let store: GatewayStore

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    guard request.method == .post || request.method == .patch, let key = request.headers[Self.header] else {
      return try await next(request, context)
    }
    guard (1...255).contains(key.utf8.count), key.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f })
    else {
      throw Problem.badRequest("Idempotency-Key must be 1 to 255 printable ASCII characters", field: "Idempotency-Key")
    }
    guard let principal = context.principal else { return try await next(request, context) }

    var request = request
    let body = try await request.collectBody(upTo: ProtoJSON.maxBody)
    var hasher = SHA256()
    hasher.update(data: Data("\(request.method) \(request.uri.path)\n".utf8))
    hasher.update(data: Self.canonical(Data(body.readableBytesView)))
    let hash = hasher.finalize().map { String(format: "%02x", $0) }.joined()

    let claimed = try await store.claimIdempotencyKey(
      key, apiKey: principal.id, method: request.method.rawValue, path: request.uri.path, hash: hash)
    guard claimed else { return try await replay(key: key, hash: hash, principal: principal) }

    let response: Response
    do {
      response = try await next(request, context)
    } catch let error as any HTTPResponseError {
      response = try error.response(from: request, context: context)
    } catch {
      try await release(key: key, principal: principal)
      throw error
    }
    guard response.status.code < 500 else {
      try await release(key: key, principal: principal)
      return response
    }
    let collector = BodyCollector()
    try await response.body.write(collector.writer)
    let stored = collector.buffer
    try await store.saveIdempotentAnswer(
      key, apiKey: principal.id, status: response.status.code, contentType: response.headers[.contentType], body: stored)
    var answer = response
    answer.body = ResponseBody(byteBuffer: stored)
    return answer
  }

  /// A JSON body with its keys sorted, so that a retry that serialises the same object in another
  /// key order is the same request; other bodies as they are.
  static func canonical(_ body: Data) -> Data {
    guard let object = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]),
      let sorted = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed])
    else { return body }
    return sorted
  }

  private func replay(key: String, hash: String, principal: APIKeyPrincipal) async throws -> Response {
    guard let answer = try await store.idempotentAnswer(key, apiKey: principal.id) else {
      throw Problem(status: .conflict, detail: "the request with this Idempotency-Key just failed; retry it", field: "Idempotency-Key")
    }
    guard answer.requestHash == hash else {
      throw Problem(
        status: .unprocessableContent,
        detail: "this Idempotency-Key was already used for a different request; use a new key", field: "Idempotency-Key")
    }
    guard let status = answer.status else {
      throw Problem(status: .conflict, detail: "a request with this Idempotency-Key is still being processed", field: "Idempotency-Key")
    }
    var headers = HTTPFields()
    if let contentType = answer.contentType { headers[.contentType] = contentType }
    headers[Self.replayed] = "true"
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: answer.body ?? ByteBuffer()))
  }

  /// Forgets a claimed key whose request failed, so that it can be retried.
  private func release(key: String, principal: APIKeyPrincipal) async throws {
    try await store.releaseIdempotencyKey(key, apiKey: principal.id)
  }
}

/// Collects a response body so that it can be stored and sent.
private final class BodyCollector: Sendable {
  private let collected = Mutex(ByteBuffer())

  var buffer: ByteBuffer { collected.withLock { $0 } }

  var writer: Writer { Writer(collector: self) }

  struct Writer: ResponseBodyWriter {
    let collector: BodyCollector

    mutating func write(_ buffer: ByteBuffer) async throws {
      var buffer = buffer
      _ = collector.collected.withLock { $0.writeBuffer(&buffer) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
  }
}
