import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.gateway.v1.APIKeyService`: the gateway's own API (API keys), served in-process.
struct APIKeyService: Herald_Gateway_V1_APIKeyService.SimpleServiceProtocol {
  let store: GatewayStore

  func createAPIKey(
    request: Herald_Gateway_V1_CreateAPIKeyRequest, context: ServerContext
  ) async throws -> Herald_Gateway_V1_CreatedAPIKey {
    let name = request.name.trimmingCharacters(in: .whitespaces)
    guard !name.isEmpty, name.count <= 200 else { throw RPCError.field("name", .invalidArgument, "name must be 1 to 200 characters") }
    guard !request.scopes.isEmpty else { throw RPCError.field("scopes", .invalidArgument, "scopes is empty") }
    if let unknown = request.scopes.first(where: { !APIKeyPrincipal.scopes.contains($0) }) {
      throw RPCError.field(
        "scopes", .invalidArgument,
        "scope '\(unknown)' is not known (known: \(APIKeyPrincipal.scopes.sorted().joined(separator: ", ")))")
    }
    let (record, key) = try await store.createKey(name: name, scopes: Array(Set(request.scopes)).sorted())
    var created = Herald_Gateway_V1_CreatedAPIKey()
    created.id = record.id.lowercasedString
    created.name = record.name
    created.prefix = record.prefix
    created.scopes = record.scopes
    created.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    created.key = key
    return created
  }

  func listAPIKeys(
    request: Herald_Gateway_V1_ListAPIKeysRequest, context: ServerContext
  ) async throws -> Herald_Gateway_V1_ListAPIKeysResponse {
    var response = Herald_Gateway_V1_ListAPIKeysResponse()
    response.keys = try await store.keys().map(Self.message)
    return response
  }

  func revokeAPIKey(
    request: Herald_Gateway_V1_RevokeAPIKeyRequest, context: ServerContext
  ) async throws -> Herald_Gateway_V1_RevokeAPIKeyResponse {
    let id = try RPCError.uuid(request.id, field: "id")
    guard try await store.revokeKey(id: id) else {
      throw RPCError.field("id", .notFound, "no active API key has id \(request.id)")
    }
    return Herald_Gateway_V1_RevokeAPIKeyResponse()
  }

  static func message(_ record: APIKeyRecord) -> Herald_Gateway_V1_APIKey {
    var key = Herald_Gateway_V1_APIKey()
    key.id = record.id.lowercasedString
    key.name = record.name
    key.prefix = record.prefix
    key.scopes = record.scopes
    key.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    if let date = record.lastUsedAt { key.lastUsedAt = Google_Protobuf_Timestamp(date: date) }
    if let date = record.revokedAt { key.revokedAt = Google_Protobuf_Timestamp(date: date) }
    return key
  }
}
