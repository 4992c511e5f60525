import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import SwiftProtobuf
import Synchronization

/// The protobuf JSON the REST API speaks (field names as written in the .proto, the proto3 JSON
/// mapping), and the one place where a downstream call's error becomes a problem answer.
enum ProtoJSON {
  /// The largest request body the gateway reads (the CSV import streams and has no limit).
  static let maxBody = 1 << 20

  static func encode<M: SwiftProtobuf.Message>(_ message: M) throws -> [UInt8] {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    return try message.jsonUTF8Bytes(options: options)
  }

  static func response<M: SwiftProtobuf.Message>(_ message: M, status: HTTPResponse.Status = .ok) throws -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encode(message))))
  }

  /// 415 unless the request says its body is JSON (`application/json` or `application/*+json`).
  static func requireJSON(_ request: Request) throws {
    let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    guard type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json")) else {
      throw Problem(
        status: .unsupportedMediaType,
        detail: type.isEmpty
          ? "the body has no Content-Type; send it as application/json"
          : "the body is \(type); send it as application/json", field: "Content-Type")
    }
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
