import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2Posix

/// The gRPC clients routes call: one per back-end service whose address is configured, and one
/// to the gateway's own services (API keys), served in-process so that they go through the same
/// interceptors as every other service.
struct GatewayClients: Sendable {
  let backEnds: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  let local: GRPCClient<InProcessTransport.Client>

  func backEnd(_ name: String) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    guard let client = backEnds[name] else {
      throw RPCError(code: .unavailable, message: "the gateway has no address for the \(name) service")
    }
    return client
  }

  func campaign() throws -> GRPCClient<HTTP2ClientTransport.Posix> { try backEnd("campaign") }
  func delivery() throws -> GRPCClient<HTTP2ClientTransport.Posix> { try backEnd("delivery") }
  func ratelimit() throws -> GRPCClient<HTTP2ClientTransport.Posix> { try backEnd("ratelimit") }
  func sync() throws -> GRPCClient<HTTP2ClientTransport.Posix> { try backEnd("sync") }
  func verification() throws -> GRPCClient<HTTP2ClientTransport.Posix> { try backEnd("verification") }
  func gateway() -> GRPCClient<InProcessTransport.Client> { local }

  /// Whether a route's service can be called (its address is configured).
  func serves(_ service: String) -> Bool {
    service == "gateway" || backEnds[service] != nil
  }
}
