import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import Synchronization

/// This replica's place among the live members: it registers and heartbeats in
/// `ratelimit.members`, reads who else is live, and keeps a gRPC client to each of them.
package final class Membership: Sendable {
  package let id: String
  package let address: String
  let ttl: Duration
  let store: RateLimitStore
  let logger: Logger

  struct View {
    var members: [MemberInfo] = []
    var ring = HashRing(members: [])
    var clients: [String: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
    var leaving = false
  }

  private let view = Mutex(View())

  package init(id: String = UUID().lowercasedString, address: String, ttl: Duration, store: RateLimitStore, logger: Logger) {
    self.id = id
    self.address = address
    self.ttl = ttl
    self.store = store
    self.logger = logger
  }

  package enum Route {
    /// This replica decides (it owns the key, or no member is known yet).
    case here
    case forward(owner: String, client: GRPCClient<HTTP2ClientTransport.Posix>)
    /// The owner cannot be asked (no usable address, or this replica is leaving): the failure
    /// policy answers.
    case unreachable(owner: String)
  }

  package func route(of key: String) -> Route {
    view.withLock { view in
      guard let owner = view.ring.owner(of: key) else { return view.leaving ? .unreachable(owner: id) : .here }
      if owner == id { return view.leaving ? .unreachable(owner: id) : .here }
      guard !view.leaving, let client = view.clients[owner] else { return .unreachable(owner: owner) }
      return .forward(owner: owner, client: client)
    }
  }

  package func owns(_ key: String) -> Bool {
    view.withLock { view in view.ring.owner(of: key).map { $0 == id } ?? true }
  }

  package var members: [MemberInfo] { view.withLock { $0.members } }
  package var shares: [String: Double] { view.withLock { $0.ring.shares() } }

  package func client(of member: String) -> GRPCClient<HTTP2ClientTransport.Posix>? {
    view.withLock { $0.clients[member] }
  }

  /// Heartbeats, reads the live members and rebuilds the ring when they changed. Returns the
  /// clients of members that joined (to be run by the caller).
  package func heartbeat() async throws -> [GRPCClient<HTTP2ClientTransport.Posix>] {
    let members = try await store.heartbeat(id: id, address: address, ttl: ttl)
    var retired: [GRPCClient<HTTP2ClientTransport.Posix>] = []
    var joined: [GRPCClient<HTTP2ClientTransport.Posix>] = []
    var changed = false
    for member in members where member.id != id && client(of: member.id) == nil {
      do {
        guard let address = ServiceAddress(member.address) else { throw RPCError(code: .invalidArgument, message: "not host:port") }
        let client = try ServiceClientFactory.make(address: address, timeout: .seconds(2))
        view.withLock { $0.clients[member.id] = client }
        joined.append(client)
      } catch {
        logger.error(
          "a member's address cannot be used",
          metadata: ["member": "\(member.id)", "address": "\(member.address)", "error": "\(error.logDescription)"])
      }
    }
    view.withLock { view in
      let before = view.members.map(\.id)
      view.members = members
      let live = Set(members.map(\.id))
      if before != members.map(\.id) {
        changed = true
        view.ring = HashRing(members: members.map(\.id))
        for (member, client) in view.clients where !live.contains(member) {
          retired.append(client)
          view.clients[member] = nil
        }
      }
    }
    for client in retired { client.beginGracefulShutdown() }
    if changed {
      logger.info("rate-limit members changed", metadata: ["members": "\(members.map(\.id).joined(separator: ","))"])
    }
    return joined
  }

  /// Leaves the ring at once (graceful shutdown), so that keys move without waiting for the TTL;
  /// from here on this replica decides nothing (what it still gets is the failure policy's).
  package func leave() async {
    view.withLock { $0.leaving = true }
    do {
      try await store.removeMember(id: id)
    } catch {
      // The row then ages out with the TTL, as a killed replica's does.
      logger.warning("leaving the members table failed; the keys move after the member TTL", metadata: ["error": "\(error.logDescription)"])
    }
  }

  package func closeConnections() {
    let clients = view.withLock { view in
      defer { view.clients.removeAll() }
      return Array(view.clients.values)
    }
    for client in clients { client.beginGracefulShutdown() }
  }
}
