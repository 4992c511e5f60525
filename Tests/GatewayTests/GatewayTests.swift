import CRMSandbox
import Foundation
import HTTPTypes
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldGateway
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import HeraldVerification
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import Prometheus
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(3))) struct GatewayTests {
  static let adminKey = "hrld_test-admin-key-0123456789"
  /// With a key for the unsubscribe links campaign e-mail needs.
  static let campaignSettings = {
    var settings = CampaignSettings()
    settings.secrets = testSecrets
    return settings
  }()
  static let deliverySettings = {
    var settings = DeliverySettings()
    settings.secrets = testSecrets
    // Texts go out at any hour of the day the tests run.
    settings.smsQuietHours = QuietWindow(start: 0, end: 0)
    return settings
  }()
  /// Nothing listens on port 1: a service that is down.
  static let down = ServiceAddress(host: "127.0.0.1", port: 1)

  /// Runs the gateway against a live campaign service (and, with `delivery`, a live delivery
  /// service, with its workers when `deliveryWorkers`); the other back-ends are down.
  func withGateway(
    adminKey: String? = GatewayTests.adminKey,
    announced: Announced = Announced(),
    delivery: Bool = false,
    deliverySettings: DeliverySettings = GatewayTests.deliverySettings,
    deliveryWorkers: Bool = false,
    onDelivery: @Sendable (_ port: Int) -> Void = { _ in },
    rateLimit: Bool = false,
    sync: SyncSettings? = nil,
    verification: Bool = false,
    live: Bool = false,
    campaignSettings: CampaignSettings = GatewayTests.campaignSettings,
    publicRatePerMinute: Int = 600,
    onDatabase: @Sendable (String) -> Void = { _ in },
    _ body: @Sendable (any TestClientProtocol) async throws -> Void
  ) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    onDatabase(url)
    var campaign = CampaignDefinition.definition(settings: campaignSettings)
    campaign.readinessDependencies = []
    campaign.makeWorkers = { _ in [] }
    let campaignDefinition = campaign
    @Sendable func run(deliveryPort: Int?, rateLimitPort: Int? = nil) async throws {
      try await withRunningService(campaignDefinition, databaseURL: url) { port, _ async throws in
        var services = Dictionary(uniqueKeysWithValues: ServiceCatalog.backEnds.map { ($0, Self.down) })
        services["campaign"] = ServiceAddress(host: "127.0.0.1", port: port)
        if let deliveryPort { services["delivery"] = ServiceAddress(host: "127.0.0.1", port: deliveryPort) }
        if let rateLimitPort { services["ratelimit"] = ServiceAddress(host: "127.0.0.1", port: rateLimitPort) }
        @Sendable func test(_ services: [String: ServiceAddress]) async throws {
          let configuration = GatewayConfiguration(
            port: 0, database: try DatabaseConfiguration(url: url), services: services,
            statusTimeout: .seconds(3), adminKey: adminKey, publicRatePerMinute: publicRatePerMinute)
          let app = try buildGateway(
            configuration: configuration, registry: PrometheusCollectorRegistry(),
            announceKey: { key in announced.keys.withLock { $0.append(key) } },
            registeredRoutes: { routes in announced.routes.withLock { $0 = routes } })
          try await app.test(live ? .live : .router, body)
        }
        if verification {
          var definition = VerificationDefinition.definition
          definition.readinessDependencies = []
          return try await withRunningService(definition, databaseURL: url, dependencies: ["campaign": services["campaign"]!]) {
            verificationPort, _ async throws in
            var withVerification = services
            withVerification["verification"] = ServiceAddress(host: "127.0.0.1", port: verificationPort)
            try await test(withVerification)
          }
        }
        guard let sync else { return try await test(services) }
        var definition = SyncDefinition.make(settings: sync)
        definition.readinessDependencies = []
        definition.makeWorkers = { _ in [] }
        try await withRunningService(definition, databaseURL: url, dependencies: ["campaign": services["campaign"]!]) {
          syncPort, _ async throws in
          var withSync = services
          withSync["sync"] = ServiceAddress(host: "127.0.0.1", port: syncPort)
          try await test(withSync)
        }
      }
    }
    if rateLimit {
      return try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { rateLimitPort, _ async throws in
        try await run(deliveryPort: nil, rateLimitPort: rateLimitPort)
      }
    }
    guard delivery else { return try await run(deliveryPort: nil) }
    var deliveryDefinition = DeliveryDefinition.make(settings: deliverySettings)
    deliveryDefinition.readinessDependencies = []
    if !deliveryWorkers { deliveryDefinition.makeWorkers = { _ in [] } }
    try await withRunningService(deliveryDefinition, databaseURL: url) { deliveryPort, _ async throws in
      onDelivery(deliveryPort)
      try await run(deliveryPort: deliveryPort)
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

  /// A subscriber with an e-mail address and a phone number, consenting on both; its id.
  static func subscriberWithBothConsents(_ client: any TestClientProtocol, email: String, phone: String) async throws -> String {
    let body = try JSONSerialization.data(withJSONObject: [
      "email": email, "phone": phone, "email_consent": ["subscribed": true, "source": "form"],
      "sms_consent": ["subscribed": true, "source": "form"],
    ])
    return try await client.execute(
      uri: "/v1/subscribers", method: .post, headers: headers(adminKey, json: true), body: ByteBuffer(bytes: body)
    ) { response async throws in try #require(try json(response.body)["id"] as? String) }
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
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers("hrld_wrong-key-000000000000")) {
        response async throws in
        #expect(response.status == .unauthorized)
        #expect(try Self.json(response.body)["detail"] as? String == "the API key is not valid or has been revoked")
      }
    }
  }

  @Test func scopesAreEnforced() async throws {
    try await withGateway { client async throws in
      let reader = try await Self.createKey(client, scopes: ["read"])
      let subscriber = ByteBuffer(string: #"{"email": "ada@example.com"}"#)
      try await client.execute(uri: "/v1/subscribers", method: .post, headers: Self.headers(reader, json: true), body: subscriber) {
        response async throws in
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
    let database = Mutex<String?>(nil)
    try await withGateway(onDatabase: { url in database.withLock { $0 = url } }) { client in
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
      // A key older than its 24 hours is free again, at the first reuse.
      let url = try #require(database.withLock { $0 })
      try await withDatabase(url) { database in
        try await database.query(
          "UPDATE gateway.idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'create-ada-1'",
          logger: Logger(label: "test"))
      }
      headers[HTTPField.Name("Idempotency-Key")!] = "create-ada-1"
      try await client.execute(
        uri: "/v1/subscribers", method: .post, headers: headers, body: ByteBuffer(string: #"{"email": "bob@example.com"}"#)
      ) { response async throws in
        #expect(response.status == .created, "\(String(buffer: response.body))")
        #expect(response.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
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
        #expect(text.contains(#"herald_service_up{backend="campaign"} 1"#))
        #expect(text.contains(#"herald_service_up{backend="delivery"} 0"#))
      }
    }
  }

  /// POSTs JSON as the admin and returns the status and the decoded answer.
  static func post(
    _ client: any TestClientProtocol, _ uri: String, _ body: [String: Any]?, key: String = GatewayTests.adminKey,
    idempotencyKey: String? = nil
  ) async throws -> (HTTPResponse.Status, [String: Any]) {
    var headers = Self.headers(key, json: body != nil)
    if let idempotencyKey { headers[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
    let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
    return try await client.execute(
      uri: uri, method: .post, headers: headers, body: data.map { ByteBuffer(bytes: $0) }
    ) { response async throws in
      (response.status, try Self.json(response.body))
    }
  }

  @Test func rateLimitsOverREST() async throws {
    try await withGateway(rateLimit: true) { client async throws in
      let (putStatus, limit) = try await Self.post(
        client, "/v1/rate-limits",
        // A token bucket: a fixed window would let the second check through when a minute ends between the two.
        [
          "descriptors": [["key": "domain", "value": "*"]], "requests_per_unit": "2", "unit": "UNIT_MINUTE",
          "algorithm": "ALGORITHM_TOKEN_BUCKET",
        ])
      #expect(putStatus == .ok && limit["key"] as? String == "domain=*")
      let (badStatus, bad) = try await Self.post(
        client, "/v1/rate-limits", ["descriptors": [["key": "domain", "value": "a b"]], "requests_per_unit": "2", "unit": "UNIT_MINUTE"])
      #expect(badStatus == .badRequest && bad["field"] as? String == "descriptors[0].value")

      let check: [String: Any] = ["checks": [["descriptors": [["key": "domain", "value": "gmail.com"]], "hits": "2"]]]
      let (_, first) = try await Self.post(client, "/v1/rate-limits/check", check)
      #expect(first["overall_code"] as? String == "CODE_OK")
      let (_, second) = try await Self.post(client, "/v1/rate-limits/check", check)
      #expect(second["overall_code"] as? String == "CODE_OVER_LIMIT")
      let refused = try #require((second["statuses"] as? [[String: Any]])?.first)
      #expect(refused["key"] as? String == "domain=gmail.com" && refused["limit_key"] as? String == "domain=*")
      #expect(Int(refused["retry_after_ms"] as? String ?? "") ?? 0 > 0)

      try await client.execute(uri: "/v1/rate-limits", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let state = try Self.json(response.body)
        #expect((state["limits"] as? [[String: Any]])?.map { $0["key"] as? String } == ["domain=*"])
        #expect((state["members"] as? [[String: Any]])?.count == 1)
        let counter = try #require((state["counters"] as? [[String: Any]])?.first)
        #expect(counter["key"] as? String == "domain=gmail.com" && counter["remaining"] == nil, "0 is left (proto3 JSON omits zero)")
      }
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let overview = try #require(try Self.json(response.body)["rate_limit"] as? [String: Any])
        #expect((overview["members"] as? [String])?.count == 1 && overview["limits"] as? Int == 1 && overview["over_limit"] as? Int == 1)
      }
      try await client.execute(uri: "/v1/rate-limits/domain=*", method: .delete, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect(response.status == .noContent)
      }
      try await client.execute(uri: "/v1/rate-limits/domain=*", method: .delete, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect(response.status == .notFound)
      }
      let (_, afterDelete) = try await Self.post(client, "/v1/rate-limits/check", check)
      #expect(afterDelete["overall_code"] as? String == "CODE_OK", "no limit: allowed")
    }
  }

  @Test func campaignFromSubscriberToSendOverREST() async throws {
    try await withGateway { client async throws in
      let (_, ada) = try await Self.post(
        client, "/v1/subscribers",
        ["email": "ada@example.com", "first_name": "Ada", "email_consent": ["subscribed": true, "source": "signup-form"]])
      let (_, grace) = try await Self.post(client, "/v1/subscribers", ["email": "grace@example.com"])
      let (listStatus, list) = try await Self.post(client, "/v1/lists", ["name": "newsletter"])
      #expect(listStatus == .created)
      let listID = try #require(list["id"] as? String)
      let (_, members) = try await Self.post(client, "/v1/lists/\(listID)/members", ["subscriber_ids": [ada["id"]!, grace["id"]!]])
      #expect(members["changed"] as? Int == 2)
      let counts = (members["list"] as? [String: Any])?["counts"] as? [String: Any]
      #expect(counts?["subscribers"] as? String == "2" && counts?["email_subscribed"] as? String == "1")

      let (templateStatus, template) = try await Self.post(
        client, "/v1/templates",
        [
          "name": "welcome", "channel": "email", "subject": "Welcome {{first_name}}",
          "body": "<p>Hello {{first_name}}</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>",
          "variables": [["name": "first_name", "default_value": "friend"], ["name": "unsubscribe_url"]],
        ])
      #expect(templateStatus == .created)
      let templateID = try #require(template["id"] as? String)
      let (undeclaredStatus, undeclared) = try await Self.post(
        client, "/v1/templates", ["name": "bad", "channel": "email", "subject": "Hi {{nickname}}", "body": "x"])
      #expect(undeclaredStatus == .badRequest && undeclared["field"] as? String == "subject")
      let (_, preview) = try await Self.post(client, "/v1/templates/\(templateID)/preview", ["subscriber_id": ada["id"]!])
      #expect(preview["subject"] as? String == "Welcome Ada")

      let (segmentStatus, segment) = try await Self.post(
        client, "/v1/segments",
        ["name": "consenting", "conditions": [["field": "email_subscribed", "op": "eq", "value": true]]])
      #expect(segmentStatus == .created)
      #expect((segment["counts"] as? [String: Any])?["subscribers"] as? String == "1")
      let (badSegmentStatus, badSegment) = try await Self.post(
        client, "/v1/segments", ["name": "bad", "conditions": [["field": "attributes.plan", "op": "gt", "value": true]]])
      #expect(badSegmentStatus == .badRequest && badSegment["field"] as? String == "conditions[0].value")

      let create: [String: Any] = ["name": "Welcome", "channel": "email", "list_id": listID, "template_id": templateID]
      let (createdStatus, created) = try await Self.post(client, "/v1/campaigns", create, idempotencyKey: "campaign-1")
      #expect(createdStatus == .created && created["status"] as? String == "draft")
      let (_, replayed) = try await Self.post(client, "/v1/campaigns", create, idempotencyKey: "campaign-1")
      #expect(replayed["id"] as? String == created["id"] as? String, "\(replayed)")
      let id = try #require(created["id"] as? String)

      // A campaign e-mail whose template shows no way to unsubscribe is refused at send, naming it.
      let (_, plain) = try await Self.post(
        client, "/v1/templates", ["name": "plain", "channel": "email", "subject": "Hi", "body": "<p>No way out</p>"])
      let (_, plainCampaign) = try await Self.post(
        client, "/v1/campaigns", ["name": "Plain", "channel": "email", "list_id": listID, "template_id": plain["id"]!])
      let (refusedStatus, refused) = try await Self.post(client, "/v1/campaigns/\(plainCampaign["id"]!)/send", nil)
      #expect(refusedStatus == .conflict, "\(refusedStatus)")
      #expect(refused["field"] as? String == "template_id")
      #expect((refused["detail"] as? String)?.hasPrefix("template 'plain' shows no way to unsubscribe") == true, "\(refused)")

      let (pauseStatus, pause) = try await Self.post(client, "/v1/campaigns/\(id)/pause", nil)
      #expect(pauseStatus == .conflict && pause["field"] as? String == "status")
      #expect((pause["detail"] as? String)?.contains("is draft") == true)
      let (sendStatus, sending) = try await Self.post(client, "/v1/campaigns/\(id)/send", nil)
      #expect(sendStatus == .ok && sending["status"] as? String == "sending")
      let campaignCounts = sending["counts"] as? [String: Any]
      #expect(campaignCounts?["audience"] as? String == "2" && campaignCounts?["outbox"] as? String == "1")
      #expect(campaignCounts?["skipped_no_consent"] as? String == "1")

      let writer = try await Self.createKey(client, scopes: ["read"])
      let (forbidden, _) = try await Self.post(client, "/v1/campaigns/\(id)/cancel", nil, key: writer)
      #expect(forbidden == .forbidden)
      try await client.execute(uri: "/v1/campaigns?status=sending", method: .get, headers: Self.headers(writer)) { response async throws in
        let campaigns = try #require(try Self.json(response.body)["campaigns"] as? [[String: Any]])
        #expect(campaigns.map { $0["id"] as? String } == [id])
      }
      try await client.execute(uri: "/v1/campaigns/\(id)/analytics", method: .get, headers: Self.headers(writer)) { response async throws in
        let analytics = try Self.json(response.body)
        #expect(analytics["campaign_id"] as? String == id && analytics["skipped_no_consent"] as? String == "1")
      }
      try await client.execute(uri: "/v1/analytics/engagement?min_score=200", method: .get, headers: Self.headers(writer)) {
        response async throws in
        let field = try Self.json(response.body)["field"] as? String
        #expect(response.status == .badRequest && field == "min_score")
      }
      // Results (SPEC §13): conversions need conversions:write (a shop's key holds only that); the
      // series and the winner's pick answer on their routes.
      let shop = try await Self.createKey(client, scopes: ["conversions:write"])
      let sale: [String: Any] = [
        "email": "ada@example.com", "value_cents": 1999, "currency": "USD", "idempotency_key": "order-1", "campaign_id": id,
      ]
      let (saleStatus, sold) = try await Self.post(client, "/v1/conversions", ["conversions": [sale]], key: shop)
      let recorded = (sold["conversions"] as? [[String: Any]])?.first
      #expect(
        saleStatus == .ok && recorded?["attribution"] as? String == "given" && recorded?["value_cents"] as? String == "1999", "\(sold)")
      let (readerStatus, _) = try await Self.post(client, "/v1/conversions", ["conversions": [sale]], key: writer)
      #expect(readerStatus == .forbidden)
      var negative = sale
      negative["value_cents"] = -5
      let (negativeStatus, refusedSale) = try await Self.post(client, "/v1/conversions", ["conversions": [negative]], key: shop)
      #expect(negativeStatus == .badRequest && refusedSale["field"] as? String == "conversions[0].value_cents", "\(refusedSale)")
      var euros = sale
      euros["currency"] = "EUR"
      let (euroStatus, refusedEuros) = try await Self.post(client, "/v1/conversions", ["conversions": [euros]], key: shop)
      #expect(euroStatus == .badRequest && refusedEuros["field"] as? String == "conversions[0].currency", "\(refusedEuros)")
      try await client.execute(uri: "/v1/campaigns/\(id)/metrics?step=1h", method: .get, headers: Self.headers(writer)) {
        response async throws in
        let metrics = try Self.json(response.body)
        #expect(response.status == .ok && metrics["step"] as? String == "1h" && metrics["currency"] as? String == "USD", "\(metrics)")
      }
      try await client.execute(uri: "/v1/campaigns/\(id)/metrics?step=2m", method: .get, headers: Self.headers(writer)) {
        response async throws in
        let field = try Self.json(response.body)["field"] as? String
        #expect(response.status == .badRequest && field == "step")
      }
      let analyticsAfter = try await client.execute(uri: "/v1/campaigns/\(id)/analytics", method: .get, headers: Self.headers(writer)) {
        try Self.json($0.body)
      }
      let totals = analyticsAfter["totals"] as? [String: Any]
      #expect(totals?["conversions"] as? String == "1" && totals?["revenue_cents"] as? String == "1999", "\(analyticsAfter)")
      let (pickStatus, pick) = try await Self.post(client, "/v1/campaigns/\(id)/ab-test/winner", ["variant": "default"])
      #expect(pickStatus == .conflict && pick["field"] as? String == "campaign_id", "\(pick)")

      // Journeys (SPEC §12): created as a draft, published, its enrolments and analytics on their
      // routes; events need events:write (an app's key holds only that).
      let definition: [String: Any] = [
        "trigger": ["kind": "event", "event": "signed_up"],
        "steps": [
          ["id": "welcome", "kind": "send", "template_id": templateID], ["id": "later", "kind": "wait", "wait_seconds": 3600],
        ],
      ]
      let (journeyStatus, journey) = try await Self.post(client, "/v1/journeys", ["name": "Welcome", "definition": definition])
      #expect(journeyStatus == .created && journey["status"] as? String == "draft", "\(journey)")
      let journeyID = try #require(journey["id"] as? String)
      let backwards: [String: Any] = [
        "trigger": ["kind": "event", "event": "signed_up"],
        "steps": [["id": "welcome", "kind": "send", "template_id": templateID, "next_step": "welcome"]],
      ]
      let (backwardsStatus, refusedJourney) = try await Self.post(client, "/v1/journeys", ["name": "Loop", "definition": backwards])
      #expect(
        backwardsStatus == .badRequest && refusedJourney["field"] as? String == "definition.steps[0].next_step", "\(refusedJourney)")
      let (publishStatus, published) = try await Self.post(client, "/v1/journeys/\(journeyID)/publish", nil)
      #expect(publishStatus == .ok && published["status"] as? String == "active" && published["version"] as? Int == 1, "\(published)")
      let (againStatus, _) = try await Self.post(client, "/v1/journeys/\(journeyID)/publish", nil)
      #expect(againStatus == .conflict)
      let app = try await Self.createKey(client, scopes: ["events:write"])
      let signup: [String: Any] = [
        "name": "signed_up", "email": "ada@example.com", "idempotency_key": "signup-1", "properties": ["plan": "pro"],
      ]
      let (eventStatus, events) = try await Self.post(client, "/v1/events", ["events": [signup]], key: app)
      #expect(eventStatus == .ok && events["recorded"] as? Int == 1, "\(events)")
      let (eventAgainStatus, eventAgain) = try await Self.post(client, "/v1/events", ["events": [signup]], key: app)
      #expect(eventAgainStatus == .ok && eventAgain["duplicates"] as? Int == 1, "\(eventAgain)")
      let (eventReaderStatus, _) = try await Self.post(client, "/v1/events", ["events": [signup]], key: writer)
      #expect(eventReaderStatus == .forbidden)
      var reserved = signup
      reserved["name"] = "herald.opened"
      let (reservedStatus, refusedEvent) = try await Self.post(client, "/v1/events", ["events": [reserved]], key: app)
      #expect(reservedStatus == .badRequest && refusedEvent["field"] as? String == "events[0].name", "\(refusedEvent)")
      try await client.execute(uri: "/v1/journeys/\(journeyID)/enrolments", method: .get, headers: Self.headers(writer)) {
        response async throws in
        #expect(response.status == .ok)
      }
      try await client.execute(uri: "/v1/journeys/\(journeyID)/analytics", method: .get, headers: Self.headers(writer)) {
        response async throws in
        let analytics = try Self.json(response.body)
        let steps = analytics["steps"] as? [[String: Any]]
        #expect(response.status == .ok && steps?.map { $0["step"] as? String } == ["welcome", "later"], "\(analytics)")
      }
      let (archiveStatus, archived) = try await Self.post(client, "/v1/journeys/\(journeyID)/archive", nil)
      #expect(archiveStatus == .ok && archived["status"] as? String == "archived")

      let (cancelStatus, cancelled) = try await Self.post(client, "/v1/campaigns/\(id)/cancel", nil)
      #expect(cancelStatus == .ok && cancelled["status"] as? String == "cancelled")
    }
  }

  static let csv = """
    email,first_name,email_consent,plan\r
    ada@example.com,"Lovelace, Ada",yes,pro\r
    "grace@example.com","Grace ""Amazing"" Hopper",no,
    bad-email,X,yes,free
    bob@example.com,Bob,maybe,free
    carol@example.com,"Carol
    Multi",1,team

    dave@example.com,Dave,true
    """

  /// A client that holds its body back until the server agrees (curl does for bodies over
  /// 1 MiB) gets `100 Continue` at once, not after its own timeout; the import then runs as usual.
  @Test func expectContinueIsAnsweredBeforeTheBodyIsSent() async throws {
    try await withGateway(live: true) { client async throws in
      let port = try #require(client.port)
      let script = """
        import socket, sys
        body = b"email,email_consent\\nexpect@example.com,yes\\n"
        s = socket.create_connection(("127.0.0.1", \(port)), timeout=60)
        s.sendall(b"POST /v1/subscribers/import HTTP/1.1\\r\\nHost: localhost\\r\\nAuthorization: Bearer \(Self.adminKey)\\r\\n"
          b"Content-Type: text/csv\\r\\nExpect: 100-continue\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body))
        first = s.recv(4096)  # before any of the body: times out if the server waits for it
        print("first:", first.split(b"\\r\\n")[0].decode())
        s.sendall(body)
        rest = first.split(b"\\r\\n\\r\\n", 1)[1]
        while b'"created"' not in rest:
          chunk = s.recv(4096)
          if not chunk: break
          rest += chunk
        print("then:", rest.split(b"\\r\\n")[0].decode(), rest.split(b"\\r\\n\\r\\n", 1)[-1].decode())
        """
      let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
      let (status, output) = try await SpawnedProcess.run(python, ["-c", script])
      #expect(status == 0, "\(output)")
      #expect(output.contains("first: HTTP/1.1 100 Continue"), "\(output)")
      #expect(output.contains("then: HTTP/1.1 200 OK") && output.contains(#""created":"1""#), "\(output)")
    }
  }

  @Test func csvImportKeepsGoodRowsAndNamesBadOnesByLine() async throws {
    try await withGateway { client async throws in
      var headers = Self.headers(Self.adminKey)
      headers[.contentType] = "text/csv; charset=utf-8"
      try await client.execute(
        uri: "/v1/subscribers/import?consent_source=csv-test", method: .post, headers: headers, body: ByteBuffer(string: Self.csv)
      ) { response async throws in
        #expect(response.status == .ok)
        let result = try Self.json(response.body)
        #expect(result["created"] as? String == "3" && result["failed"] as? String == "3", "\(result)")
        let errors = try #require(result["errors"] as? [[String: Any]])
        #expect(errors.map { $0["row"] as? String } == ["4", "5", "9"])
        #expect(errors.map { $0["field"] as? String } == ["email", "email_consent", "row"])
      }
      try await client.execute(uri: "/v1/subscribers?page_size=10", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        let subscribers = try #require(try Self.json(response.body)["subscribers"] as? [[String: Any]])
        let names = Set(subscribers.compactMap { $0["first_name"] as? String })
        #expect(names == ["Lovelace, Ada", "Grace \"Amazing\" Hopper", "Carol\nMulti"])
        let ada = try #require(subscribers.first { $0["email"] as? String == "ada@example.com" })
        #expect(ada["attributes_json"] as? String == #"{"plan": "pro"}"#)
        #expect((ada["email_consent"] as? [String: Any])?["source"] as? String == "csv-test")
      }
      headers[.contentType] = "application/pdf"
      try await client.execute(uri: "/v1/subscribers/import", method: .post, headers: headers, body: ByteBuffer(string: "x")) {
        response async throws in
        #expect(response.status == .unsupportedMediaType)
        #expect(try Self.json(response.body)["field"] as? String == "Content-Type")
      }
      headers[.contentType] = "text/csv"
      try await client.execute(
        uri: "/v1/subscribers/import", method: .post, headers: headers, body: ByteBuffer(string: "name,city\nAda,London\n")
      ) { response async throws in
        #expect(response.status == .badRequest)
        #expect((try Self.json(response.body)["detail"] as? String)?.contains("email or a phone column") == true)
      }
    }
  }

  @Test func jsonLinesImport() async throws {
    try await withGateway { client async throws in
      let lines = [
        #"{"email": "ada@example.com", "attributes": {"plan": "pro", "seats": 3}, "email_consent": {"subscribed": true, "source": "app"}}"#,
        #"{"phone": "+44 7700 900123", "sms_consent": true}"#,
        #"{"email": "x@example.com", "favourite": "blue"}"#,
        "not json",
        "",
      ].joined(separator: "\n")
      var headers = Self.headers(Self.adminKey)
      headers[.contentType] = "application/x-ndjson"
      try await client.execute(uri: "/v1/subscribers/import", method: .post, headers: headers, body: ByteBuffer(string: lines)) {
        response async throws in
        let result = try Self.json(response.body)
        #expect(result["created"] as? String == "2" && result["failed"] as? String == "2", "\(result)")
        let errors = try #require(result["errors"] as? [[String: Any]])
        #expect(errors.map { $0["field"] as? String } == ["favourite", "row"])
        #expect(errors.map { $0["row"] as? String } == ["3", "4"])
      }
    }
  }

  /// A CSV's extra columns become a JSON object that any JSON reader reads back as they were.
  @Test func importAttributesAreWrittenAsJSONThatReadsBack() throws {
    let attributes = [
      "plan": "pro", "quote": #"say "hi""#, "back\\slash": #"C:\path\"#, "lines": "one\ntwo\r\nthree\tfour",
      "controls": "\u{01}\u{1F}\u{7F}", "unicode": "é 東京 🎉 \u{2028}", "": "empty key", "slash": "a/b",
    ]
    let json = ImportReader.jsonObject(attributes)
    let read = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String])
    #expect(read == attributes, "\(json)")
    #expect(json.hasPrefix(#"{"":"empty key","back\\slash":"#), "keys sorted: \(json)")
  }

  @Test func importReaderGivesTheSameRowsHoweverTheBodyIsCut() throws {
    var whole = ImportReader(format: .csv)
    let expected = try whole.read(ByteBuffer(string: Self.csv)) + whole.finish()
    var bytewise = ImportReader(format: .csv)
    var rows: [Herald_Campaign_V1_ImportRow] = []
    for byte in Self.csv.utf8 { rows += try bytewise.read(ByteBuffer(bytes: [byte])) }
    rows += try bytewise.finish()
    #expect(rows == expected)
    #expect(rows.count == 6)

    var unclosed = ImportReader(format: .csv)
    let cut = try unclosed.read(ByteBuffer(string: "email,first_name\na@example.com,\"never closed\n")) + unclosed.finish()
    #expect(cut.last?.error.contains("never closed") == true && cut.last?.row == 2)

    var long = ImportReader(format: .ndjson)
    let big = #"{"email": "a@example.com", "first_name": ""# + String(repeating: "x", count: 70_000) + "\"}\n"
    let oversized = try long.read(ByteBuffer(string: big + #"{"email": "b@example.com"}"# + "\n")) + long.finish()
    #expect(oversized.map(\.errorField) == ["row", ""])
    #expect(oversized[1].subscriber.email == "b@example.com" && oversized[1].row == 2)
  }

  /// WhatsApp numbers and consent, and one device's push token a CSV row (NDJSON: a list).
  @Test func importReaderTakesWhatsAppAndPushTokens() throws {
    var csv = ImportReader(format: .csv)
    let rows =
      try csv.read(
        ByteBuffer(
          string: """
            email,whatsapp,whatsapp_consent,whatsapp_consent_source,push_platform,push_token,push_app_id
            ada@example.com,+4915112345678,yes,checkout,apns,\(String(repeating: "a1", count: 32)),dev.herald.shop
            bob@example.com,,,,,,
            cy@example.com,+4915187654321,maybe,,,,

            """)) + csv.finish()
    #expect(rows.count == 3)
    let ada = rows[0].subscriber
    #expect(ada.whatsapp == "+4915112345678" && ada.whatsappConsent.subscribed && ada.whatsappConsent.source == "checkout")
    #expect(ada.pushTokens.map(\.platform) == ["apns"] && ada.pushTokens.first?.appID == "dev.herald.shop")
    #expect(rows[1].subscriber.pushTokens.isEmpty && rows[1].subscriber.whatsapp.isEmpty)
    #expect(rows[2].errorField == "whatsapp_consent")

    var lines = ImportReader(format: .ndjson)
    let parsed =
      try lines.read(
        ByteBuffer(
          string: #"{"email": "dee@example.com", "whatsapp": "+4915100000001", "whatsapp_consent": true, "#
            + #""push_tokens": [{"platform": "fcm", "token": "dee-phone:APA91bDee", "app_id": "dev.herald.shop"}]}"# + "\n"
            + #"{"email": "eve@example.com", "push_tokens": [{"platform": "fcm", "token": 7}]}"# + "\n")) + lines.finish()
    #expect(parsed[0].subscriber.whatsappConsent.subscribed && parsed[0].subscriber.pushTokens.first?.token == "dee-phone:APA91bDee")
    #expect(parsed[1].errorField == "push_tokens[0].token")
  }

  /// The unsubscribe link's public routes: no API key; the page never changes anything; one click
  /// (RFC 8058) unsubscribes, and again; a link that is not genuine is a 400 that says only that.
  @Test func theUnsubscribeLinkPageAndOneClickWorkWithoutAKey() async throws {
    let secrets = try SecretBox("k1:" + Data(repeating: 5, count: 32).base64EncodedString())
    var settings = CampaignSettings()
    settings.secrets = secrets
    let links = UnsubscribeLinks(publicURL: "http://127.0.0.1:8080", secrets: secrets)
    try await withGateway(campaignSettings: settings) { client in
      let id = try await Self.subscriberWithBothConsents(client, email: "ada@example.com", phone: "+14155550123")
      let subscriber = try #require(UUID(uuidString: id))
      let url = links.url(UnsubscribeToken(subscriber: subscriber, campaign: UUID(), channel: "email"))
      let token = try #require(url?.split(separator: "/").last.map(String.init))
      func consent() async throws -> (email: Bool, sms: Bool) {
        try await client.execute(uri: "/v1/subscribers/\(id)", method: .get, headers: Self.headers(Self.adminKey)) {
          response async throws in
          let object = try Self.json(response.body)
          let email = (object["email_consent"] as? [String: Any])?["subscribed"] as? Bool ?? false
          let sms = (object["sms_consent"] as? [String: Any])?["subscribed"] as? Bool ?? false
          return (email, sms)
        }
      }
      var form = HTTPFields()
      form[.contentType] = "application/x-www-form-urlencoded"
      // The page: HTML with a button per way to leave, and nothing changed by a GET.
      try await client.execute(uri: "/u/\(token)", method: .get) { response async throws in
        #expect(response.status == .ok)
        #expect(response.headers[.contentType] == "text/html; charset=utf-8")
        let page = String(buffer: response.body)
        #expect(page.contains("For a***@example.com.") && page.contains("value=\"email\"") && page.contains("value=\"all\""))
        #expect(!page.contains("<script"))
      }
      #expect(try await consent() == (true, true))
      // One click, twice: 200 both times, e-mail off, SMS untouched.
      for _ in 0..<2 {
        try await client.execute(
          uri: "/u/\(token)", method: .post, headers: form, body: ByteBuffer(string: "List-Unsubscribe=One-Click")
        ) { response async throws in
          #expect(response.status == .ok && String(buffer: response.body) == "unsubscribed\n")
        }
      }
      #expect(try await consent() == (false, true))
      // RFC 8058 §3.2's multipart/form-data body works the same (a link sent by SMS here).
      let smsURL = links.url(UnsubscribeToken(subscriber: subscriber, campaign: UUID(), channel: "sms"))
      let smsToken = try #require(smsURL?.split(separator: "/").last.map(String.init))
      var multipart = HTTPFields()
      multipart[.contentType] = "multipart/form-data; boundary=\"----herald-test\""
      let parts =
        "------herald-test\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n------herald-test--\r\n"
      try await client.execute(uri: "/u/\(smsToken)", method: .post, headers: multipart, body: ByteBuffer(string: parts)) {
        response async throws in
        #expect(response.status == .ok && String(buffer: response.body) == "unsubscribed\n", "\(String(buffer: response.body))")
      }
      #expect(try await consent() == (false, false))
      // A changed byte: 404, saying only that the link is not valid; nothing changes.
      var changed = Array(token)
      changed[changed.count - 4] = changed[changed.count - 4] == "A" ? "B" : "A"
      for method in [HTTPRequest.Method.get, .post] {
        try await client.execute(
          uri: "/u/\(String(changed))", method: method, headers: form, body: ByteBuffer(string: "List-Unsubscribe=One-Click")
        ) { response async throws in
          #expect(response.status == .notFound)
          #expect(String(buffer: response.body).contains("This link is not valid"))
        }
      }
      // A POST that asks for nothing is refused naming the field; the page's choice answers the page.
      try await client.execute(uri: "/u/\(token)", method: .post, headers: form, body: ByteBuffer(string: "x=1")) {
        response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "channel")
      }
      try await client.execute(uri: "/u/\(token)", method: .post, headers: form, body: ByteBuffer(string: "channel=all")) {
        response async throws in
        #expect(response.status == .ok)
        let page = String(buffer: response.body)
        #expect(page.contains("Done: you will no longer receive any of our messages from us."))
        #expect(page.contains("You receive no messages from us."))
      }
      #expect(try await consent() == (false, false))
    }
  }

  /// The tracking links' public routes: the pixel is a GIF never cached, a click a 302 to the
  /// signed target; a link that is not genuine is a 404 (and counts against the public limit,
  /// which genuine hits never do: a mail privacy proxy fetches many recipients' pixels).
  @Test func theTrackingRoutesAnswerThePixelAndTheRedirectWithoutAKey() async throws {
    let secrets = try SecretBox("k1:" + Data(repeating: 6, count: 32).base64EncodedString())
    var settings = DeliverySettings()
    settings.secrets = secrets
    let database = Mutex<String?>(nil)
    try await withGateway(
      delivery: true, deliverySettings: settings, publicRatePerMinute: 4, onDatabase: { url in database.withLock { $0 = url } }
    ) { client async throws in
      let (campaign, subscriber) = (UUID(), UUID())
      let (status, queued) = try await Self.post(
        client, "/v1/messages",
        [
          "idempotency_key": "\(campaign.lowercasedString):\(subscriber.lowercasedString)", "channel": "CHANNEL_EMAIL",
          "recipient": "ada@example.com", "subject": "News", "body": "<p>Hi</p>", "format": "html",
        ])
      #expect(status == .accepted)
      let messageID = try #require(queued["message_id"] as? String)
      let id = try #require(UUID(uuidString: messageID))
      // Sent an hour ago (no worker runs here).
      let url = try #require(database.withLock { $0 })
      try await withDatabase(url) { postgres in
        try await postgres.query("UPDATE delivery.messages SET status = 'sent' WHERE id = \(id)", logger: Logger(label: "test"))
        try await postgres.query(
          "INSERT INTO delivery.delivery_events (message_id, status, occurred_at) VALUES (\(id), 'sent', now() - interval '1 hour')",
          logger: Logger(label: "test"))
      }
      let links = TrackingLinks(publicURL: "", secrets: secrets)
      let signers = try #require(links.signers())
      let pixel = TrackingToken(kind: .open, campaign: campaign, subscriber: subscriber).sign(with: signers.open)
      let click = TrackingToken(
        kind: .click, campaign: campaign, subscriber: subscriber, link: 0, links: 1, url: "https://shop.example/?a=1&b=2"
      ).sign(with: signers.click)
      var browser = HTTPFields()
      browser[.userAgent] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
      // More genuine hits than the limit's burst: every one answered.
      for _ in 0..<3 {
        try await client.execute(uri: pixel, method: .get, headers: browser) { response async throws in
          #expect(response.status == .ok && response.headers[.contentType] == "image/gif")
          #expect(response.headers[.cacheControl]?.contains("no-store") == true)
          #expect(Array(response.body.readableBytesView.prefix(6)) == Array("GIF89a".utf8) && response.body.readableBytes == 43)
        }
        try await client.execute(uri: click, method: .get, headers: browser) { response async throws in
          #expect(response.status == .found && response.headers[.location] == "https://shop.example/?a=1&b=2")
        }
      }
      try await client.execute(uri: click, method: .head, headers: browser) { response async throws in
        #expect(response.status == .found)
      }
      try await client.execute(uri: "/v1/messages/\(id.lowercasedString)", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        let events = try #require(try Self.json(response.body)["events"] as? [[String: Any]])
        let tracked = events.filter { ["opened", "clicked"].contains($0["status"] as? String) }
        #expect(tracked.count == 7)
        // The HEAD is a scanner's; the rest a person's.
        #expect(tracked.filter { $0["machine"] as? Bool == true }.count == 1)
        #expect((tracked.last?["signals"] as? [String]) == ["head-request"])
      }
      // Tracking asked of an SMS campaign is refused before anything is looked up.
      let (refused, problem) = try await Self.post(
        client, "/v1/campaigns",
        [
          "name": "Texts", "channel": "sms", "list_id": UUID().uuidString, "template_id": UUID().uuidString,
          "tracking": ["clicks": true],
        ])
      #expect(refused == .badRequest)
      #expect(
        problem["detail"] as? String
          == "the body may ask for tracking only when channel is email (the pixel and the redirects live in HTML e-mail)")
      // Not genuine: a 404 (the image for the pixel, a page for a click); the second uses up the
      // burst of two, and the third is turned away.
      var changed = Array(click)
      changed[changed.count - 3] = changed[changed.count - 3] == "A" ? "B" : "A"
      try await client.execute(uri: String(changed), method: .get) { response async throws in
        #expect(response.status == .notFound && String(buffer: response.body).contains("This link is not valid"))
      }
      try await client.execute(uri: "/t/o/v1.k1.nonsense.x", method: .get) { response async throws in
        #expect(response.status == .notFound && response.headers[.contentType] == "image/gif")
      }
      try await client.execute(uri: pixel, method: .get, headers: browser) { response async throws in
        #expect(response.status == .tooManyRequests)
      }
    }
  }

  /// The public routes are rate-limited per client address (a 429 with Retry-After); routes with a
  /// key are not.
  @Test func publicRoutesAreRateLimited() async throws {
    try await withGateway(publicRatePerMinute: 4) { client in
      // A burst of 2, then 429; the webhooks share the limit.
      for expected in [HTTPResponse.Status.notFound, .notFound, .tooManyRequests] {
        try await client.execute(uri: "/u/v1.k1.not.genuine", method: .get) { response async throws in
          #expect(response.status == expected)
          if expected == .tooManyRequests {
            #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try Self.json(response.body)["detail"] as? String == "too many requests from unknown to public routes; try again later")
          }
        }
      }
      // Webhooks count only the requests refused for their signature; a client over the limit is
      // turned away from them too.
      try await client.execute(
        uri: "/v1/webhooks/any", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}")
      ) {
        response async throws in
        #expect(response.status == .tooManyRequests)
      }
      try await client.execute(uri: "/v1/lists", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .ok)
      }
    }
  }

  /// A provider posting well-signed webhooks is never limited; requests refused for their
  /// signature are.
  @Test func onlyWebhooksRefusedForTheirSignatureCountAgainstTheLimit() async throws {
    try await withGateway(delivery: true, publicRatePerMinute: 4) { client async throws in
      let (putStatus, _) = try await Self.post(
        client, "/v1/providers",
        [
          "name": "hook", "channel": "CHANNEL_EMAIL", "webhook_secret": "whsec", "webhook": ["url": "http://127.0.0.1:1/send"],
        ])
      #expect(putStatus == .ok)
      func webhook(secret: String) async throws -> HTTPResponse.Status {
        let body = Data(#"{"events":[]}"#.utf8)
        var headers = Self.headers(nil, json: true)
        headers[HTTPField.Name("X-Herald-Signature")!] = WebhookSignature.header(
          secret: secret, timestamp: Int(Date().timeIntervalSince1970), body: body)
        return try await client.execute(uri: "/v1/webhooks/hook", method: .post, headers: headers, body: ByteBuffer(bytes: body)) {
          $0.status
        }
      }
      // Six signed posts against a burst of two: all taken.
      for _ in 0..<6 { #expect(try await webhook(secret: "whsec") == .ok) }
      // Two forged ones use the burst up; the third, and a signed one after it, wait.
      #expect(try await webhook(secret: "guess") == .unauthorized)
      #expect(try await webhook(secret: "guess") == .unauthorized)
      #expect(try await webhook(secret: "guess") == .tooManyRequests)
      #expect(try await webhook(secret: "whsec") == .tooManyRequests)
    }
  }

  @Test func thePublicLimitRefillsAtItsRateAndKeepsClientsApart() {
    let limiter = PublicRouteLimiter(perMinute: 4)  // one request every 15 s, bursts of 2
    let start = ContinuousClock.now
    #expect(limiter.take("a", now: start) == nil && limiter.take("a", now: start) == nil)
    #expect(limiter.take("a", now: start) == .seconds(15))
    #expect(limiter.take("b", now: start) == nil)
    #expect(limiter.take("a", now: start + .seconds(14)) != nil)
    #expect(limiter.take("a", now: start + .seconds(16)) == nil)
    #expect((limiter.wait("a", now: start + .seconds(16)) ?? .zero) > .seconds(13) && limiter.wait("c", now: start) == nil)
    #expect(PublicRouteLimiter.client(try? SocketAddress(ipAddress: "2001:db8:1:2:3:4:5:6", port: 1)) == "2001:db8:1:2::/64")
    #expect(PublicRouteLimiter.client(try? SocketAddress(ipAddress: "2001:db8::1", port: 1)) == "2001:db8:0:0::/64")
    #expect(PublicRouteLimiter.client(try? SocketAddress(ipAddress: "192.0.2.7", port: 1)) == "192.0.2.7")
  }

  /// The preference page in a real browser (headless Chromium, phone-sized): it loads without
  /// JavaScript, fits the screen, and its button unsubscribes from e-mail only; screenshots of
  /// both pages are kept as test artefacts.
  @Test func thePreferencePageWorksInARealBrowser() async throws {
    let secrets = try SecretBox("k1:" + Data(repeating: 6, count: 32).base64EncodedString())
    var settings = CampaignSettings()
    settings.secrets = secrets
    let links = UnsubscribeLinks(publicURL: "", secrets: secrets)
    try await withGateway(live: true, campaignSettings: settings) { client in
      let id = try await Self.subscriberWithBothConsents(client, email: "grace@example.com", phone: "+14155550199")
      let subscriber = try #require(UUID(uuidString: id))
      let url = links.url(UnsubscribeToken(subscriber: subscriber, campaign: UUID(), channel: "email"))
      let token = try #require(url?.split(separator: "/").last.map(String.init))
      let port = try #require(client.port)
      let page = try await browse("http://127.0.0.1:\(port)/u/\(token)", click: "email", name: "preference-page")
      #expect(page.before.title == "Your subscription" && page.before.scripts == 0)
      #expect(page.before.buttons == ["email", "sms", "all"])
      #expect(page.before.text.contains("You receive e-mail and text messages from us."), "\(page.before.text)")
      #expect(page.before.width <= page.before.viewport, "the page is wider than a phone's screen")
      #expect(page.after.text.contains("Done: you will no longer receive e-mail from us."), "\(page.after.text)")
      #expect(page.after.text.contains("You receive text messages from us."), "\(page.after.text)")
      try await client.execute(uri: "/v1/subscribers/\(id)", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let object = try Self.json(response.body)
        #expect((object["email_consent"] as? [String: Any])?["subscribed"] as? Bool != true)
        #expect((object["sms_consent"] as? [String: Any])?["subscribed"] as? Bool == true)
      }
    }
  }

  /// The document says which message fields go together, so the gateway refuses the rest itself
  /// with the rule's words: HTML and its text part are for e-mail, and so is the unsubscribe URL.
  @Test func aMessagesFormatTextPartAndUnsubscribeLinkFitItsChannel() async throws {
    try await withGateway(delivery: true) { client async throws in
      let base: [String: Any] = ["idempotency_key": "m-1", "channel": "CHANNEL_SMS", "recipient": "+14155550123", "body": "hi"]
      for (extra, message) in [
        (
          ["text_body": "hi"],
          "the body may use format html and text_body only on CHANNEL_EMAIL (the other channels are text; text_body is the text part of an HTML e-mail)"
        ),
        (
          ["format": "html"],
          "the body may use format html and text_body only on CHANNEL_EMAIL (the other channels are text; text_body is the text part of an HTML e-mail)"
        ),
        (
          ["list_unsubscribe_url": "https://x.test/u/1"],
          "the body may carry list_unsubscribe_url, in_reply_to and auto_submitted only on CHANNEL_EMAIL"
        ),
        (["in_reply_to": "<a@b.example>"], "the body may carry list_unsubscribe_url, in_reply_to and auto_submitted only on CHANNEL_EMAIL"),
        (
          ["channel": "CHANNEL_EMAIL", "recipient": "ada@example.com", "quiet_hours": ["start": "09:00", "end": "17:00"]],
          "the body may carry quiet_hours, time_zone and ignore_quiet_hours only on CHANNEL_SMS"
        ),
        (
          ["ignore_quiet_hours": true, "campaign_id": "01a24601-8124-7011-92d3-610d1aa13e2d"],
          "the body may set ignore_quiet_hours only without a campaign_id (campaign texts keep the recipient's hours)"
        ),
      ] as [([String: Any], String)] {
        let (status, problem) = try await Self.post(client, "/v1/messages", base.merging(extra) { $1 })
        #expect(status == .badRequest && problem["detail"] as? String == message, "\(problem)")
      }
      let (accepted, _) = try await Self.post(
        client, "/v1/messages",
        [
          "idempotency_key": "m-2", "channel": "CHANNEL_EMAIL", "recipient": "ada@example.com", "body": "<p>hi</p>",
          "format": "html", "text_body": "hi", "list_unsubscribe_url": "https://x.test/u/1",
        ])
      #expect(accepted == .accepted)
    }
  }

  @Test func deliveryProvidersMessagesWebhooksAndSuppressionsOverREST() async throws {
    try await withGateway(delivery: true) { client async throws in
      let (putStatus, provider) = try await Self.post(
        client, "/v1/providers",
        [
          "name": "hook", "channel": "CHANNEL_EMAIL", "priority": 1, "cost_cents": "3", "webhook_secret": "whsec",
          "webhook": ["url": "http://127.0.0.1:1/send"],
        ])
      #expect(putStatus == .ok)
      #expect(provider["webhook_secret"] as? String == "<redacted>")
      let (badStatus, bad) = try await Self.post(
        client, "/v1/providers", ["name": "Hook!", "channel": "CHANNEL_EMAIL", "webhook": ["url": "http://x.test"]])
      #expect(badStatus == .badRequest && bad["field"] as? String == "name")
      try await client.execute(uri: "/v1/providers", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let providers = try #require(try Self.json(response.body)["providers"] as? [[String: Any]])
        #expect(providers.map { $0["name"] as? String } == ["hook"])
        #expect((providers[0]["status"] as? [String: Any])?["breaker_state"] as? String == "closed")
      }

      // A transactional message; the same idempotency key again is a duplicate of it.
      let message: [String: Any] = [
        "idempotency_key": "receipt-1", "channel": "CHANNEL_EMAIL", "recipient": "ada@example.com", "subject": "Receipt", "body": "Thanks",
      ]
      let (queuedStatus, queued) = try await Self.post(client, "/v1/messages", message)
      #expect(queuedStatus == .accepted)
      let id = try #require(queued["message_id"] as? String)
      let (_, again) = try await Self.post(client, "/v1/messages", message)
      #expect(again["message_id"] as? String == id && again["duplicate"] as? Bool == true)
      let (missingStatus, missing) = try await Self.post(
        client, "/v1/messages", ["channel": "CHANNEL_EMAIL", "recipient": "a@b.c", "body": "x"])
      // (A single message over REST since the routes come from the protos: the field is its own.)
      #expect(missingStatus == .badRequest && missing["field"] as? String == "idempotency_key")

      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let delivery = try #require(try Self.json(response.body)["delivery"] as? [String: Any])
        #expect((delivery["providers"] as? [[String: Any]])?.first?["breaker_state"] as? String == "closed")
        #expect((delivery["queue"] as? [String: Any])?["queued"] as? Int == 1)
      }

      // The provider's webhook: no API key, but signed with its webhook secret.
      func webhook(_ json: String, secret: String, contentType: String = "application/json") async throws -> (
        HTTPResponse.Status, [String: Any]
      ) {
        let body = Data(json.utf8)
        var headers = Self.headers(nil, json: true)
        headers[.contentType] = contentType
        headers[HTTPField.Name("X-Herald-Signature")!] = WebhookSignature.header(
          secret: secret, timestamp: Int(Date().timeIntervalSince1970), body: body)
        return try await client.execute(uri: "/v1/webhooks/hook", method: .post, headers: headers, body: ByteBuffer(bytes: body)) {
          response async throws in (response.status, try Self.json(response.body))
        }
      }
      let (okStatus, applied) = try await webhook(
        #"{"events":[{"type":"opened","message_id":"\#(id)"},{"type":"delivered","provider_message_id":"nope"}]}"#, secret: "whsec")
      #expect(okStatus == .ok)
      #expect(applied["applied"] as? Int == 1 && applied["ignored"] as? Int == 1)
      let (forgedStatus, forged) = try await webhook(#"{"events":[]}"#, secret: "guess")
      #expect(forgedStatus == .unauthorized && forged["field"] as? String == "signature")
      // The signature is checked before the media type: forged is 401 whatever the body; a
      // well-signed body that is not JSON is 415, and nothing of either is applied.
      let (forgedPlain, _) = try await webhook("opened \(id)", secret: "guess", contentType: "text/plain")
      #expect(forgedPlain == .unauthorized)
      let (signedPlain, signedPlainProblem) = try await webhook(
        #"{"events":[{"type":"opened","message_id":"\#(id)"}]}"#, secret: "whsec", contentType: "text/plain")
      #expect(signedPlain == .unsupportedMediaType, "\(signedPlainProblem)")
      let (malformedStatus, malformed) = try await webhook(#"{"events":[{"type":"opened"}]}"#, secret: "whsec")
      #expect(malformedStatus == .badRequest && malformed["field"] as? String == "events[0].message_id")
      try await client.execute(uri: "/v1/messages/\(id)", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let events = try #require(try Self.json(response.body)["events"] as? [[String: Any]])
        #expect(events.map { $0["status"] as? String } == ["queued", "opened"])
      }

      let (addedStatus, _) = try await Self.post(client, "/v1/suppressions", ["address": "Grace@Example.com", "detail": "asked"])
      #expect(addedStatus == .created)
      try await client.execute(uri: "/v1/suppressions/grace@example.com", method: .delete, headers: Self.headers(Self.adminKey)) {
        response async throws in #expect(response.status == .noContent)
      }
      try await client.execute(uri: "/v1/suppressions/grace@example.com", method: .delete, headers: Self.headers(Self.adminKey)) {
        response async throws in #expect(response.status == .notFound)
      }
    }
  }

  @Test func syncJobsRunsAndConflictsOverREST() async throws {
    let sandbox = CRMSandbox(token: "patGATEWAY.0123456789")
    sandbox.addTable(
      base: "appGateway", name: "Contacts", fields: [("Email", .email), ("Name", .singleLineText), ("Modified", .lastModifiedTime)])
    sandbox.insert(base: "appGateway", table: "Contacts", [["Email": .string("ada@example.com"), "Name": .string("Ada")]])
    try await withCRMSandbox(sandbox) { apiPort async throws in
      var settings = SyncSettings()
      settings.apiURL = "http://127.0.0.1:\(apiPort)"
      settings.environment = ["CRM_TOKEN": "patGATEWAY.0123456789"]
      try await withGateway(sync: settings) { client async throws in
        let job: [String: Any] = [
          "name": "contacts", "base_id": "appGateway", "table_id": "Contacts", "token_env": "CRM_TOKEN", "direction": "DIRECTION_PULL",
          "modified_field": "Modified",
          "mappings": [
            ["external_field": "Email", "subscriber_field": "email"], ["external_field": "Name", "subscriber_field": "first_name"],
          ],
        ]
        var bad = job
        bad["token_env"] = "patGATEWAY.0123456789"
        let (badStatus, problem) = try await Self.post(client, "/v1/sync/jobs", bad)
        #expect(badStatus == .badRequest && problem["field"] as? String == "token_env")
        let (status, created) = try await Self.post(client, "/v1/sync/jobs", job)
        #expect(status == .created)
        let id = try #require(created["id"] as? String)
        let (startStatus, run) = try await Self.post(client, "/v1/sync/jobs/\(id)/runs", nil)
        #expect(startStatus == .accepted && run["status"] as? String == "RUN_STATUS_RUNNING")
        let runID = try #require(run["id"] as? String)
        var finished: [String: Any] = [:]
        try await eventually("the run to end") {
          try await client.execute(uri: "/v1/sync/runs/\(runID)", method: .get, headers: Self.headers(Self.adminKey)) {
            response async throws in
            finished = try Self.json(response.body)
          }
          return finished["status"] as? String != "RUN_STATUS_RUNNING"
        }
        #expect(finished["status"] as? String == "RUN_STATUS_SUCCEEDED")
        #expect((finished["counts"] as? [String: Any])?["created"] as? String == "1")
        try await client.execute(uri: "/v1/sync/jobs/\(id)/runs?page_size=5", method: .get, headers: Self.headers(Self.adminKey)) {
          response async throws in
          #expect((try Self.json(response.body)["runs"] as? [[String: Any]])?.map { $0["id"] as? String } == [runID])
        }
        try await client.execute(uri: "/v1/sync/jobs/\(id)", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
          #expect((try Self.json(response.body)["cursor"] as? String)?.isEmpty == false)
        }
        try await client.execute(uri: "/v1/sync/jobs/\(id)/conflicts?pending=true", method: .get, headers: Self.headers(Self.adminKey)) {
          response async throws in
          #expect(response.status == .ok)
        }
        let (missingStatus, _) = try await Self.post(client, "/v1/sync/jobs/\(UUID())/runs", nil)
        #expect(missingStatus == .notFound)
        let (takeStatus, takeProblem) = try await Self.post(client, "/v1/sync/conflicts/\(UUID())/resolve", ["take": "both"])
        #expect(takeStatus == .badRequest && takeProblem["field"] as? String == "take")
        let (resolveStatus, _) = try await Self.post(client, "/v1/sync/conflicts/\(UUID())/resolve", ["take": "local"])
        #expect(resolveStatus == .notFound)
        try await client.execute(uri: "/v1/subscribers?page_size=10", method: .get, headers: Self.headers(Self.adminKey)) {
          response async throws in
          #expect((try Self.json(response.body)["subscribers"] as? [[String: Any]])?.first?["first_name"] as? String == "Ada")
        }
      }
    }
  }

  @Test func verificationOverRESTAndInTheSystemStatus() async throws {
    try await withGateway(verification: true) { client async throws in
      let (badStatus, bad) = try await Self.post(client, "/v1/verification/runs", ["component": "disks"])
      #expect(badStatus == .badRequest && bad["field"] as? String == "component")
      // Only campaign and the gateway run here: the other schemas have no ledger yet.
      let (status, report) = try await Self.post(client, "/v1/verification/runs", ["component": "ledger"])
      #expect(status == .ok && report["overall_status"] as? String == "STATUS_CRITICAL")
      let issues = try #require(report["issues"] as? [[String: Any]])
      #expect(
        Set(issues.compactMap { $0["affected_object"] as? String }) == [
          "delivery.schema_migrations", "ratelimit.schema_migrations", "sync.schema_migrations",
        ])
      let fingerprint = try #require(issues.first?["fingerprint"] as? String)
      let (repairStatus, repairProblem) = try await Self.post(client, "/v1/verification/issues/\(fingerprint)/repairs", nil)
      #expect(repairStatus == .conflict && (repairProblem["detail"] as? String)?.contains("no repair Herald can run") == true)
      try await client.execute(uri: "/v1/verification/reports/latest", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect(try Self.json(response.body)["id"] as? String == report["id"] as? String)
      }
      try await client.execute(uri: "/v1/verification/issues", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect((try Self.json(response.body)["issues"] as? [[String: Any]])?.count == 3)
      }
      try await client.execute(uri: "/system/status", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        let overview = try #require(try Self.json(response.body)["verification"] as? [String: Any])
        #expect(overview["report_id"] as? String == report["id"] as? String)
        #expect((overview["summary"] as? String)?.hasPrefix("CRITICAL: 3 issues") == true)
        #expect((overview["open_issues"] as? [String: Int])?["CRITICAL"] == 3)
        // No webhook here: the CRITICAL ones are alerted (recorded) at once.
        #expect((overview["alerts"] as? [[String: Any]])?.count == 3)
      }
    }
  }

  @Test func openAPIDocumentDescribesEveryRoute() async throws {
    let announced = Announced()
    try await withGateway(announced: announced, sync: SyncSettings(), verification: true) { client async throws in
      try await client.execute(uri: "/openapi.json", method: .get, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .ok)
        let document = try Self.json(response.body)
        #expect((document["openapi"] as? String)?.hasPrefix("3.") == true)
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        // Every route the router really holds, with :name written {name} as in OpenAPI.
        let routes = announced.routes.withLock { $0 }.map { route in
          (
            route.path.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
              .reduce("") { $0 + "/" + $1 }, route.method
          )
        }
        #expect(routes.count > 30)
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
/// What the gateway told the test: generated admin keys and the routes its router holds.
final class Announced: Sendable {
  let keys = Mutex<[String]>([])
  let routes = Mutex<[(method: String, path: String)]>([])
}
