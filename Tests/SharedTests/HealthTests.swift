import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import PostgresNIO
import Testing

@Suite(.timeLimit(.minutes(3))) struct HealthTests {
  static let grpcName = "herald.test.v1.Probe"

  static func definition(dependsOn: [String] = []) -> ServiceDefinition {
    ServiceDefinition(
      name: "probe", grpcServices: [grpcName],
      migrations: MigrationSet(
        schema: "probe", migrations: [Migration(version: 1, name: "t", sql: "CREATE TABLE t (id integer);")]),
      readinessDependencies: dependsOn
    ) { _ in [] }
  }

  @Test func reportsServingAfterMigrationsAndNotFoundForUnknownServices() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(Self.definition(), databaseURL: url, waitUntilServing: false) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        try await eventually("SERVING") {
          try await health.check(.init()).status == .serving
        }
        var named = Grpc_Health_V1_HealthCheckRequest()
        named.service = Self.grpcName
        #expect(try await health.check(named).status == .serving)
        named.service = "no.such.Service"
        await #expect {
          try await health.check(named)
        } throws: { error in
          (error as? RPCError)?.code == .notFound
        }
      }
      // The migrations ran before SERVING.
      try await withDatabase(url) { client async throws in
        let count = try await client.query("SELECT count(*) FROM probe.schema_migrations").collect().first?.decode(Int.self)
        #expect(count == 1)
      }
    }
  }

  @Test func staysNotServingWhileADependencyIsDown() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    // Nothing listens on this port.
    let nowhere = ServiceAddress(host: "127.0.0.1", port: 1)
    try await withRunningService(
      Self.definition(dependsOn: ["campaign"]), databaseURL: url, dependencies: ["campaign": nowhere],
      waitUntilServing: false
    ) { port, host in
      try await withClient(port: port) { client async throws in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        // Migrations finish quickly; give the readiness task time to reach the dependency wait.
        try await eventually("migrations") {
          try await withDatabase(url) { db async throws in
            (try? await db.query("SELECT count(*) FROM probe.schema_migrations").collect().first?.decode(Int.self)) == 1
          }
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await health.check(.init()).status == .notServing)
        #expect(host.health.status(of: "") == .notServing)
      }
    }
  }

  @Test func watchStreamsChanges() async throws {
    let status = HealthStatus(services: ["a"])
    var updates = status.updates(of: "a").makeAsyncIterator()
    #expect(await updates.next() == .notServing)
    status.setAll(.serving)
    #expect(await updates.next() == .serving)
    status.shutDown()
    #expect(await updates.next() == .notServing)
    #expect(await updates.next() == nil)
    var unknown = status.updates(of: "b").makeAsyncIterator()
    #expect(await unknown.next() == .serviceUnknown)
  }

  @Test func watchOverGRPCEndsAtShutdown() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    let seen = try await withRunningService(Self.definition(), databaseURL: url) { port, host in
      try await withClient(port: port) { client async throws in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        return try await health.watch(.init()) { response in
          var statuses: [ServingStatus] = []
          for try await message in response.messages {
            statuses.append(message.status)
            if message.status == .serving { host.health.shutDown() }
          }
          return statuses
        }
      }
    }
    #expect(seen.last == .notServing)
    #expect(seen.contains(.serving))
  }

  @Test func echoesTheRequestID() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(Self.definition(), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        let request = ClientRequest(message: Grpc_Health_V1_HealthCheckRequest(), metadata: ["x-request-id": "req-123"])
        let echoed = try await health.check(request: request) { response in
          response.metadata[stringValues: "x-request-id"].first(where: { _ in true })
        }
        #expect(echoed == "req-123")
      }
    }
  }
}
