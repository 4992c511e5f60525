import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization
import Testing

/// Three real `ratelimit` processes on one database (SPEC §4): one key hammered through all of
/// them at once is admitted within 1% of its limit; its owner killed with SIGKILL, the key moves
/// to a survivor, which carries on from the saved counter. Each replica's `/metrics` counts the
/// decisions where they were made and the checks it forwarded.
@Suite(.timeLimit(.minutes(5))) struct RateLimitReplicaTests {
  typealias Limits = Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>

  static let limit: Int64 = 3_000

  @Test func threeReplicasHoldOneLimitAndTheKeyMovesWhenItsOwnerIsKilled() async throws {
    let executable = try builtExecutable("ratelimit")
    let url = try await TestPostgres.shared.makeDatabase()
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-replicas-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }

    let ports = try (0..<3).map { _ in try freePort() }
    let metricsPorts = try (0..<3).map { _ in try freePort() }
    let replicas = try zip(ports, metricsPorts).map { port, metricsPort in
      var environment = ProcessInfo.processInfo.environment
      environment["HERALD_DATABASE_URL"] = url
      environment["HERALD_PORT"] = String(port)
      environment["HERALD_METRICS_PORT"] = String(metricsPort)
      environment["HERALD_LOG_LEVEL"] = "warning"
      environment["HERALD_RATELIMIT_HEARTBEAT"] = "200ms"
      environment["HERALD_RATELIMIT_MEMBER_TTL"] = "1s"
      environment["HERALD_RATELIMIT_FLUSH_INTERVAL"] = "100ms"
      // While the owner is away its keys are refused, so the kill cannot let anything through.
      environment["HERALD_RATELIMIT_FAILURE_POLICY"] = "closed"
      return try SpawnedProcess(executable, [], output: "\(folder)/ratelimit-\(port).log", environment: environment)
    }
    defer { for replica in replicas { replica.kill() } }

    try await withClients(ports) { clients in
      // Every replica sees all three before the test starts.
      for client in clients {
        try await eventually(timeout: .seconds(60), "each replica to see three members") {
          let members = try? await client.getRateLimitState(.with { $0.localOnly = true }).members
          return members?.count == 3
        }
      }
      // 3,000 a day in a bucket of 3,000: within the test the refill adds less than one.
      _ = try await clients[0].putLimit(
        .with {
          $0.descriptors = [
            .with {
              $0.key = "provider"
              $0.value = "shared"
            }
          ]
          $0.requestsPerUnit = Self.limit
          $0.unit = .day
        })
      // The other replicas load limits with their heartbeat.
      for client in clients {
        try await eventually("the limit to reach every replica") {
          let answer = try await client.shouldRateLimit(
            .with {
              $0.checks = [Self.check()]
              $0.peek = true
            })
          return answer.statuses.first?.limit == Self.limit
        }
      }

      // 4,800 single-hit calls, 4 at a time through each replica.
      let first = try await hammer(clients, callsPerTask: 400)
      let overshoot = first.admitted - Int(Self.limit)
      print(
        "3 replicas, one key, limit \(Self.limit): \(first.admitted) admitted of 4800 (overshoot \(overshoot), \(String(format: "%.2f", Double(overshoot) / Double(Self.limit) * 100)) %)"
      )
      #expect(first.admitted >= Int(Self.limit) - 1, "the whole limit was available")
      #expect(abs(overshoot) <= Int(Self.limit) / 100, "admitted within 1% of the limit")
      #expect(first.owners.count == 1, "one owner decided every call: \(first.owners)")
      let owner = try #require(first.owners.first)
      let members = try await clients[0].getRateLimitState(.with { $0.localOnly = true }).members
      let ownerPort = try #require(members.first { $0.id == owner }.flatMap { ServiceAddress($0.address)?.port })
      let ownerIndex = try #require(ports.firstIndex(of: ownerPort))

      // The owner decided every call it answered, forwarded or not; the others only forwarded
      // theirs (1,600 calls went through each), and answered what the owner did not (closed policy).
      var figures: [[String: Double]] = []
      for port in metricsPorts { figures.append(try await scrapeMetrics(port: port)) }
      func decisions(_ figures: [String: Double], _ outcome: String) -> Double {
        figures["herald_ratelimit_decisions_total{outcome=\"\(outcome)\"}"] ?? 0
      }
      for (index, replica) in figures.enumerated() {
        #expect(replica["herald_ratelimit_members"] == 3 && replica["herald_ratelimit_limits"] == 1, "replica \(index): \(replica)")
        if index == ownerIndex {
          #expect(replica["herald_ratelimit_forwarded_total"] ?? 0 == 0, "the owner forwards none of its keys")
        } else {
          #expect(replica["herald_ratelimit_forwarded_total"] ?? 0 >= 1_600, "replica \(index) forwarded the calls it got")
          #expect(decisions(replica, "over_limit") == 0, "replica \(index) refused nothing itself: the owner did")
        }
      }
      let failures = figures.map { decisions($0, "failure_policy") }.reduce(0, +)
      let owned = figures[ownerIndex]
      #expect(decisions(owned, "ok") >= Double(first.admitted), "every admitted call was the owner's decision")
      #expect(decisions(owned, "ok") + decisions(owned, "over_limit") + failures >= 4_800, "every call was decided once")

      // Kill the owner once its counter is saved.
      try await withDatabase(url) { database in
        try await eventually("the owner to save its counter") {
          let saved = try await database.query(
            "SELECT tokens FROM ratelimit.counters WHERE key = 'provider=shared'", logger: Logger(label: "test")
          ).decode(Double.self).elements().first
          return saved.map { $0 < Double(Self.limit) - Double(first.admitted) + 1 } ?? false
        }
      }
      replicas[ownerIndex].kill()
      let survivors = clients.enumerated().filter { $0.offset != ownerIndex }.map(\.element)

      // The survivors refuse while the owner may still be alive, then take the key over.
      try await eventually(timeout: .seconds(20), "the key to move to a live replica") {
        let answer = try await survivors[0].shouldRateLimit(
          .with {
            $0.checks = [Self.check()]
            $0.peek = true
          })
        return answer.statuses.first.map { !$0.byFailurePolicy && $0.owner != owner } ?? false
      }
      let second = try await hammer(survivors, callsPerTask: 100)
      #expect(second.owners.count == 1 && !second.owners.contains(owner), "a survivor owns the key: \(second.owners)")
      let total = first.admitted + second.admitted
      print("after the owner was killed: \(second.admitted) more admitted (total \(total) of limit \(Self.limit))")
      #expect(total - Int(Self.limit) <= Int(Self.limit) / 100, "the limit still holds after the move")
    }
  }

  static func check() -> Herald_Ratelimit_V1_RateLimitCheck {
    .with {
      $0.descriptors = [
        .with {
          $0.key = "provider"
          $0.value = "shared"
        }
      ]
    }
  }

  struct Tally: Sendable {
    var admitted = 0
    var owners: Set<String> = []
  }

  /// Calls through every client at once (4 tasks each); counts what was admitted and who decided.
  func hammer(_ clients: [Limits], callsPerTask: Int) async throws -> Tally {
    try await withThrowingTaskGroup(of: Tally.self) { group in
      for client in clients {
        for _ in 0..<4 {
          group.addTask {
            var tally = Tally()
            for _ in 0..<callsPerTask {
              let status = try await client.shouldRateLimit(.with { $0.checks = [Self.check()] }).statuses[0]
              if status.code == .ok { tally.admitted += 1 }
              if !status.byFailurePolicy { tally.owners.insert(status.owner) }
            }
            return tally
          }
        }
      }
      var total = Tally()
      for try await tally in group {
        total.admitted += tally.admitted
        total.owners.formUnion(tally.owners)
      }
      return total
    }
  }

  /// Clients to every port, connected for the duration of `body`.
  func withClients(_ ports: [Int], _ body: ([Limits]) async throws -> Void) async throws {
    func nest(_ remaining: ArraySlice<Int>, _ made: [Limits]) async throws {
      guard let port = remaining.first else { return try await body(made) }
      try await withClient(port: port) { client async throws in
        try await nest(remaining.dropFirst(), made + [Limits(wrapping: client)])
      }
    }
    try await nest(ports[...], [])
  }
}
