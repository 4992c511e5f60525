import GRPCCore
import SwiftProtobuf

/// A REST route bound to an RPC (`google.api.http`), as protoc-gen-herald-rest writes them into
/// `RESTRoute.bound`. Paths, parameters and schemas are read from the OpenAPI document by
/// `operationID`; this holds what the gateway needs beyond it.
struct RESTRoute: Sendable {
  var operationID: String
  /// `get`, `post`, `put`, `patch` or `delete`.
  var method: String
  /// The OpenAPI path, e.g. `/v1/subscribers/{id}`.
  var path: String
  /// The service that answers: `campaign`, ..., or `gateway` (the gateway's own).
  var service: String
  var scope: String
  var status: Int
  /// Request fields the gateway fills with the calling API key's name (who asked).
  var callerFields: [String]
  /// A bool field of the reply that must be true, else 404 with `notFound`.
  var foundField: String?
  var notFound: String?
  /// The deadline of the call; the gateway's default when nil.
  var timeout: Duration?
  var call: RESTCall
}

/// A typed gRPC call behind a route, taking and giving protobuf JSON.
struct RESTCall: Sendable {
  let invoke: @Sendable (_ clients: GatewayClients, _ json: [UInt8], _ options: CallOptions) async throws -> [UInt8]

  /// Decodes the request from proto3 JSON (field names as in the .proto), calls, and encodes the
  /// reply the same way.
  static func unary<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
    _ body: @escaping @Sendable (GatewayClients, Input, CallOptions) async throws -> Output
  ) -> RESTCall {
    RESTCall { clients, json, options in
      let request: Input
      do {
        request = try Input(jsonUTF8Bytes: json)
      } catch {
        throw Problem.badRequest("the request does not fit \(Input.protoMessageName): \(error)")
      }
      return try ProtoJSON.encode(try await body(clients, request, options))
    }
  }
}
