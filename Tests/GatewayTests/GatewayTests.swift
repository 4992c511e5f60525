import Foundation
import HTTPTypes
import HeraldCampaign
import HeraldCore
import HeraldGateway
import HeraldPostgres
import HeraldServerKit
import HeraldTestSupport
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(3))) struct GatewayTests {
  static let adminKey = "hrld_test-admin-key-0123456789"
  /// Nothing listens on port 1: a service that is down.
  static let down = ServiceAddress(host: "127.0.0.1", port: 1)

  /// Runs the gateway against a live campaign service; the other back-ends are down.
  func withGateway(
    adminKey: String? = GatewayTests.adminKey,
    announced: Announced = Announced(),
    _ body: @Sendable (any TestClientProtocol) async throws -> Void
  ) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    var campaign = CampaignDefinition.definition
    campaign.readinessDependencies = []
    campaign.makeWorkers = { _ in [] }
    try await withRunningService(campaign, databaseURL: url) { port, _ async throws in
      var services = Dictionary(uniqueKeysWithValues: ServiceCatalog.backEnds.map { ($0, Self.down) })
      services["campaign"] = ServiceAddress(host: "127.0.0.1", port: port)
      let configuration = GatewayConfiguration(
        port: 0, database: try DatabaseConfiguration(url: url), services: services,
        statusTimeout: .milliseconds(500), adminKey: adminKey)
      let app = try buildGateway(
        configuration: configuration, registry: PrometheusCollectorRegistry(),
        announceKey: { key in announced.keys.withLock { $0.append(key) } })
      try await app.test(.router, body)
    }
  }

  static func headers(_ key: String?, json: Bool = false) -> HTTPFields {
    var headers = HTTPFields()
    if let key { headers[.authorization] = "Bearer \(key)" }
    if json { headers[.contentType] = "application/json" }
    return headers
  }

  static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
  }

  static func createKey(_ client: any TestClientProtocol, scopes: [String]) async throws -> String {
    let body = try JSONSerialization.data(withJSONObject: ["name": "test \(scopes)", "scopes": scopes])
    return try await client.execute(
      uri: "/v1/api-keys", method: .post, headers: headers(adminKey, json: true), body: ByteBuffer(bytes: body)
    ) { response async throws in
      #expect(response.status == .created)
      return try #require(try json(response.body)["key"] as? String)
    }
  }

  @Test func healthNeedsNoKeyButEverythingElseDoes() async throws {
    try await withGateway { client async throws in
      try await client.execute(uri: "/health", method: .get) { response async throws in
        #expect(response.status == .ok)
      }
      for uri in ["/system/status", "/metrics", "/openapi.json", "/v1/api-keys", "/v1/subscribers/x"] {
        try await client.execute(uri: uri, method: .get) { response async throws in
          #expect(response.status == .unauthorized, "\(uri)")
          #expect(response.headers[.contentType] == "application/problem+json")
          #expect(try Self.json(response.body)["status"] as? Int == 401)
        }
      }
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers("hrld_wrong-key-000000000000")) { response async throws in
        #expect(response.status == .unauthorized)
        #expect(try Self.json(response.body)["detail"] as? String == "the API key is not valid or has been revoked")
      }
    }
  }

  @Test func scopesAreEnforced() async throws {
    try await withGateway { client async throws in
      let reader = try await Self.createKey(client, scopes: ["read"])
      let subscriber = ByteBuffer(string: #"{"email": "ada@example.com"}"#)
      try await client.execute(uri: "/v1/subscribers", method: .post, headers: Self.headers(reader, json: true), body: subscriber) { response async throws in
        #expect(response.status == .forbidden)
        #expect((try Self.json(response.body)["detail"] as? String)?.contains("subscribers:write") == true)
      }
      try await client.execute(uri: "/v1/api-keys", method: .get, headers: Self.headers(reader)) { response async throws in
        #expect(response.status == .forbidden)
      }
      let writer = try await Self.createKey(client, scopes: ["subscribers:write", "read"])
      let id = try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: Self.headers(writer, json: true), body: subscriber
      ) { response async throws in
        #expect(response.status == .created)
        let body = try Self.json(response.body)
        #expect(body["email"] as? String == "ada@example.com")
        return try #require(body["id"] as? String)
      }
      try await client.execute(uri: "/v1/subscribers/\(id)", method: .get, headers: Self.headers(reader)) { response async throws in
        #expect(response.status == .ok)
      }
    }
  }

  @Test func revokedKeysStopWorking() async throws {
    try await withGateway { client async throws in
      let key = try await Self.createKey(client, scopes: ["read"])
      let id = try await client.execute(uri: "/v1/api-keys", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let keys = try #require(try Self.json(response.body)["keys"] as? [[String: Any]])
        #expect(keys.allSatisfy { $0["key"] == nil && $0["key_hash"] == nil })
        return try #require(keys.first { $0["prefix"] as? String == String(key.prefix(12)) }?["id"] as? String)
      }
      try await client.execute(uri: "/v1/api-keys/\(id)", method: .delete, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .noContent)
      }
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers(key)) { response async throws in
        #expect(response.status == .unauthorized)
      }
    }
  }

  @Test func errorsAreProblemsNamingTheField() async throws {
    try await withGateway { client async throws in
      let admin = Self.headers(Self.adminKey, json: true)
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin, body: ByteBuffer(string: #"{"email": "nope"}"#)
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect(response.headers[.contentType] == "application/problem+json")
        #expect(try Self.json(response.body)["field"] as? String == "email")
      }
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin, body: ByteBuffer(string: #"{"emial": "a@example.com"}"#)
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "emial")
      }
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin, body: ByteBuffer(string: #"{"email": "dup@example.com"}"#)
      ) { #expect($0.status == .created) }
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin, body: ByteBuffer(string: #"{"email": "DUP@example.com"}"#)
      ) { response async throws in
        #expect(response.status == .conflict)
        #expect(try Self.json(response.body)["field"] as? String == "email")
      }
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin, body: ByteBuffer(string: #"{"email": "#)
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect((try Self.json(response.body)["detail"] as? String)?.hasPrefix("the request body is not valid JSON: ") == true)
      }
      var tagged = admin
      tagged[HTTPField.Name("X-Request-Id")!] = "trace-42"
      try await client.execute(uri: "/v1/subscribers/\(UUID())", method: .get, headers: tagged) { response async throws in
        #expect(response.headers[HTTPField.Name("X-Request-Id")!] == "trace-42")
        #expect(response.status == .notFound)
      }
      try await client.execute(uri: "/v1/no-such-route", method: .get, headers: admin) { response async throws in
        #expect(response.status == .notFound)
        #expect(response.headers[.contentType] == "application/problem+json")
      }
      try await client.execute(
        uri: "/v1/api-keys", method: .post, headers: admin, body: ByteBuffer(string: #"{"name": "x", "scopes": ["root"]}"#)
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "scopes")
      }
    }
  }

  @Test func subscriberLifecycleOverREST() async throws {
    try await withGateway { client in
      let admin = Self.headers(Self.adminKey, json: true)
      let id = try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: admin,
        body: ByteBuffer(string: #"{"email": "ada@example.com", "email_consent": {"subscribed": true, "source": "form"}}"#)
      ) { response async throws in try #require(try Self.json(response.body)["id"] as? String) }
      try await client.execute(
        uri: "/v1/subscribers/\(id)", method: .patch, headers: admin, body: ByteBuffer(string: #"{"first_name": "Ada"}"#)
      ) { response async throws in
        #expect(response.status == .ok)
        #expect(try Self.json(response.body)["first_name"] as? String == "Ada")
      }
      try await client.execute(
        uri: "/v1/subscribers/\(id)/unsubscribe", method: .post, headers: admin, body: ByteBuffer(string: #"{"channel": "fax"}"#)
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "channel")
      }
      try await client.execute(
        uri: "/v1/subscribers/\(id)/unsubscribe", method: .post, headers: admin,
        body: ByteBuffer(string: #"{"channel": "email", "source": "support"}"#)
      ) { response async throws in
        #expect(response.status == .ok)
        let consent = try #require(try Self.json(response.body)["email_consent"] as? [String: Any])
        #expect(consent["subscribed"] == nil)
        #expect(consent["unsubscribed_at"] is String)
      }
      try await client.execute(uri: "/v1/subscribers/\(id)/export", method: .get, headers: admin) { response async throws in
        let history = try #require(try Self.json(response.body)["consent_history"] as? [[String: Any]])
        #expect(history.map { $0["source"] as? String } == ["form", "support"])
      }
      try await client.execute(uri: "/v1/subscribers?page_size=0x10", method: .get, headers: admin) { response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "page_size")
      }
      try await client.execute(uri: "/v1/subscribers?page_size=10", method: .get, headers: admin) { response async throws in
        let subscribers = try #require(try Self.json(response.body)["subscribers"] as? [[String: Any]])
        #expect(subscribers.map { $0["id"] as? String } == [id])
      }
      try await client.execute(uri: "/v1/subscribers/\(id)", method: .delete, headers: admin) { response async throws in
        #expect(response.status == .ok)
        let body = try Self.json(response.body)
        #expect(body["status"] as? String == "erased")
        #expect(body["email"] == nil)
      }
    }
  }

  @Test func idempotencyKeyReplaysTheFirstAnswer() async throws {
    try await withGateway { client in
      var headers = Self.headers(Self.adminKey, json: true)
      headers[HTTPField.Name("Idempotency-Key")!] = "create-ada-1"
      let body = ByteBuffer(string: #"{"email": "ada@example.com"}"#)
      let (firstID, firstBody) = try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: headers, body: body
      ) { response async throws in
        #expect(response.status == .created)
        #expect(response.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
        return (try #require(try Self.json(response.body)["id"] as? String), String(buffer: response.body))
      }
      // The retry gets the same answer and creates nothing (a second create would be a 409).
      try await client.execute(uri: "/v1/subscribers", method: .post, headers: headers, body: body) { response async throws in
        #expect(response.status == .created)
        #expect(response.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
        #expect(String(buffer: response.body) == firstBody)
      }
      try await client.execute(uri: "/v1/subscribers?page_size=10", method: .get, headers: headers) { response async throws in
        let subscribers = try #require(try Self.json(response.body)["subscribers"] as? [[String: Any]])
        #expect(subscribers.map { $0["id"] as? String } == [firstID])
      }
      // The same key for another request is refused, naming the header.
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: headers, body: ByteBuffer(string: #"{"email": "bob@example.com"}"#)
      ) { response async throws in
        #expect(response.status == .unprocessableContent)
        #expect(try Self.json(response.body)["field"] as? String == "Idempotency-Key")
      }
      // A rejected request is stored too: its retry gets the same problem.
      headers[HTTPField.Name("Idempotency-Key")!] = "bad-email-1"
      for _ in 0..<2 {
        try await client.execute(
          uri: "/v1/subscribers", method: .post, headers: headers, body: ByteBuffer(string: #"{"email": "nope"}"#)
        ) { response async throws in
          #expect(response.status == .badRequest)
          #expect(response.headers[.contentType] == "application/problem+json")
        }
      }
      headers[HTTPField.Name("Idempotency-Key")!] = String(repeating: "k", count: 256)
      try await client.execute(uri: "/v1/subscribers", method: .post, headers: headers, body: body) { response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "Idempotency-Key")
      }
    }
  }

  @Test func systemStatusNamesTheServicesThatAreDown() async throws {
    try await withGateway { client async throws in
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .ok)
        let body = try Self.json(response.body)
        #expect(body["status"] as? String == "degraded")
        #expect(body["degraded"] as? [String] == ["delivery", "ratelimit", "sync", "verification"])
        let services = try #require(body["services"] as? [[String: Any]])
        let campaign = try #require(services.first { $0["name"] as? String == "campaign" })
        #expect(campaign["status"] as? String == "SERVING")
        #expect(campaign["latency_ms"] is Double)
        let delivery = try #require(services.first { $0["name"] as? String == "delivery" })
        #expect(delivery["status"] as? String == "UNREACHABLE")
      }
      try await client.execute(uri: "/metrics", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .ok)
        let text = String(buffer: response.body)
        #expect(text.contains(#"herald_service_up{service="campaign"} 1"#))
        #expect(text.contains(#"herald_service_up{service="delivery"} 0"#))
      }
    }
  }

  @Test func openAPIDocumentDescribesEveryRoute() async throws {
    try await withGateway { client async throws in
      try await client.execute(uri: "/openapi.json", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .ok)
        let document = try Self.json(response.body)
        #expect((document["openapi"] as? String)?.hasPrefix("3.") == true)
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let routes: [(String, String)] = [
          ("/health", "get"), ("/system/status", "get"), ("/metrics", "get"), ("/openapi.json", "get"),
          ("/v1/api-keys", "get"), ("/v1/api-keys", "post"), ("/v1/api-keys/{id}", "delete"),
          ("/v1/subscribers", "get"), ("/v1/subscribers", "post"), ("/v1/subscribers/{id}", "get"),
          ("/v1/subscribers/{id}", "patch"), ("/v1/subscribers/{id}", "delete"),
          ("/v1/subscribers/{id}/unsubscribe", "post"), ("/v1/subscribers/{id}/export", "get"),
        ]
        for (path, method) in routes {
          #expect(paths[path]?[method] != nil, "\(method) \(path) is not in the OpenAPI document")
        }
        #expect(Set(paths.keys) == Set(routes.map(\.0)))
      }
    }
  }

  @Test func generatesAnAdminKeyOnceWhenNoneIsConfigured() async throws {
    let announced = Announced()
    try await withGateway(adminKey: nil, announced: announced) { client async throws in
      let key = try #require(announced.keys.withLock { $0.first })
      try await client.execute(uri: "/v1/api-keys", method: .get, headers: Self.headers(key)) { response async throws in
        #expect(response.status == .ok)
      }
    }
    #expect(announced.keys.withLock { $0.count } == 1)
  }
}

/// Keys the gateway announced (printed) at start-up.
final class Announced: Sendable {
  let keys = Mutex<[String]>([])
}
