import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldServerKit
import Logging
import PostgresNIO
import Synchronization

/// A live replica as the members table shows it.
package struct MemberInfo: Sendable, Equatable {
  package var id: String
  package var address: String
  package var startedAt: Date
  package var heartbeatAt: Date
}

/// Consistent hashing over members: each member holds `pointsPerMember` points on a 64-bit ring;
/// a key belongs to the first point at or after its hash. A member joining or leaving moves only
/// the keys of the arcs it gains or loses.
package struct HashRing: Sendable {
  package static let pointsPerMember = 128
  private var points: [(hash: UInt64, member: String)] = []

  package init(members: [String]) {
    var points: [(hash: UInt64, member: String)] = []
    for member in members {
      for point in 0..<Self.pointsPerMember {
        points.append((Self.hash("\(member)#\(point)"), member))
      }
    }
    points.sort { a, b in a.hash != b.hash ? a.hash < b.hash : a.member < b.member }
    self.points = points
  }

  package func owner(of key: String) -> String? {
    guard !points.isEmpty else { return nil }
    let hash = Self.hash(key)
    var low = 0
    var high = points.count
    while low < high {
      let middle = (low + high) / 2
      if points[middle].hash < hash { low = middle + 1 } else { high = middle }
    }
    return points[low == points.count ? 0 : low].member
  }

  /// The share of the ring each member owns.
  package func shares() -> [String: Double] {
    guard let last = points.last else { return [:] }
    var shares: [String: Double] = [:]
    var previous = last.hash
    for point in points {
      shares[point.member, default: 0] += Double(point.hash &- previous) / Double(UInt64.max)
      previous = point.hash
    }
    return shares
  }

  /// FNV-1a, then a SplitMix64 finaliser so that similar keys land far apart.
  package static func hash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
    hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
    return hash ^ (hash >> 31)
  }
}

/// This replica's place among the live members: it registers and heartbeats in
/// `ratelimit.members`, reads who else is live, and keeps a gRPC client to each of them.
package final class Membership: Sendable {
  package let id: String
  package let address: String
  let ttl: Duration
  let client: PostgresClient
  let logger: Logger

  struct View {
    var members: [MemberInfo] = []
    var ring = HashRing(members: [])
    var clients: [String: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
    var leaving = false
  }

  private let view = Mutex(View())

  package init(id: String = UUID().lowercasedString, address: String, ttl: Duration, client: PostgresClient, logger: Logger) {
    self.id = id
    self.address = address
    self.ttl = ttl
    self.client = client
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
    let ttlSeconds = ttl.milliseconds / 1000
    let rows = try await client.query(
      """
      WITH me AS (
        INSERT INTO ratelimit.members (id, address) VALUES (\(id), \(address))
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), address = EXCLUDED.address
        RETURNING id, address, started_at, heartbeat_at
      ), gone AS (
        DELETE FROM ratelimit.members WHERE heartbeat_at < now() - interval '1 hour'
      )
      SELECT id, address, started_at, heartbeat_at FROM me
      UNION
      SELECT id, address, started_at, heartbeat_at FROM ratelimit.members
      WHERE heartbeat_at > now() - make_interval(secs => \(ttlSeconds)) AND id <> \(id)
      ORDER BY id
      """, logger: logger)
    var members: [MemberInfo] = []
    for try await (id, address, startedAt, heartbeatAt) in rows.decode((String, String, Date, Date).self) {
      members.append(MemberInfo(id: id, address: address, startedAt: startedAt, heartbeatAt: heartbeatAt))
    }
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
        logger.error("a member's address cannot be used", metadata: ["member": "\(member.id)", "address": "\(member.address)", "error": "\(error)"])
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
    _ = try? await client.query("DELETE FROM ratelimit.members WHERE id = \(id)", logger: logger)
  }

  package func closeConnections() {
    let clients = view.withLock { view in
      defer { view.clients.removeAll() }
      return Array(view.clients.values)
    }
    for client in clients { client.beginGracefulShutdown() }
  }
}
