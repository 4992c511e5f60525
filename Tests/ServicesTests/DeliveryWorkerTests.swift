import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization
import Testing

/// The delivery workers against real providers on loopback: SMTP (aiosmtpd) and HTTP (SMS
/// gateway and webhook shapes), with breakers, failover, retries, dead letters, spend caps,
/// suppressions, provider webhooks and warm-up (SPEC §3).
@Suite(.timeLimit(.minutes(5))) struct DeliveryWorkerTests {
  typealias Delivery = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  static func settings(workers: Int = 2) -> DeliverySettings {
    var settings = DeliverySettings()
    settings.workers = workers
    settings.batchSize = 20
    settings.concurrency = 8
    settings.idle = .milliseconds(20)
    settings.retryBase = .milliseconds(50)
    settings.retryCap = .milliseconds(200)
    settings.maxAttempts = 3
    settings.refreshInterval = .milliseconds(200)
    settings.breaker = BreakerPolicy(window: .seconds(30), failureRate: 0.5, minimumAttempts: 3, openFor: .seconds(60))
    settings.secrets = testSecrets
    // Texts go out at any hour of the day the tests run (QuietHoursTests set the window they test).
    settings.smsQuietHours = QuietWindow(start: 0, end: 0)
    return settings
  }

  /// Delivery with its workers running (the rate-limit dependency is not waited for), on a new
  /// database or on `databaseURL`.
  func withDelivery(
    _ settings: DeliverySettings = settings(), throttle: any SendThrottle = Unthrottled(), databaseURL: String? = nil,
    _ body: (Delivery, PostgresClient) async throws -> Void
  ) async throws {
    let url: String
    if let databaseURL { url = databaseURL } else { url = try await TestPostgres.shared.makeDatabase() }
    var definition = DeliveryDefinition.make(settings: settings, throttle: throttle)
    definition.readinessDependencies = []
    try await withRunningService(definition, databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        try await withDatabase(url) { database async throws in
          try await body(Delivery(wrapping: client), database)
        }
      }
    }
  }

  static func email(_ key: String, to recipient: String, subject: String = "Hello", campaign: String = "")
    -> Herald_Delivery_V1_OutboundMessage
  {
    .with {
      $0.idempotencyKey = key
      $0.channel = .email
      $0.recipient = recipient
      $0.subject = subject
      $0.body = "Body of \(key) — ünïcödé"
      $0.campaignID = campaign
    }
  }

  static func sms(_ key: String, to recipient: String, campaign: String = "") -> Herald_Delivery_V1_OutboundMessage {
    .with {
      $0.idempotencyKey = key
      $0.channel = .sms
      $0.recipient = recipient
      $0.body = "Code \(key) +1"
      $0.campaignID = campaign
    }
  }

  static func smtpProvider(_ name: String, sink: SMTPSink, username: String = "", password: String = "", priority: Int32 = 0)
    -> Herald_Delivery_V1_Provider
  {
    .with {
      $0.name = name
      $0.channel = .email
      $0.priority = priority
      $0.smtp = .with {
        $0.host = sink.certificatePEM == nil ? "127.0.0.1" : "localhost"
        $0.port = Int32(sink.port)
        $0.username = username
        $0.password = password
        $0.fromAddress = "news@herald.test"
        $0.maxConnections = 2
        $0.trustedCaPem = sink.certificatePEM ?? ""
        $0.tls = sink.certificatePEM == nil ? .none : .starttlsRequired
      }
    }
  }

  static func httpProvider(_ name: String, port: Int, priority: Int32, cost: Int64 = 0, channel: Herald_Delivery_V1_Channel = .sms)
    -> Herald_Delivery_V1_Provider
  {
    .with {
      $0.name = name
      $0.channel = channel
      $0.priority = priority
      $0.costCents = cost
      if channel == .sms {
        $0.httpSms = .with {
          $0.url = "http://127.0.0.1:\(port)/2010-04-01/Accounts/AC1/Messages.json"
          $0.username = "AC1"
          $0.password = "secret"
          $0.from = "+15550000000"
          $0.formEncoded = true
        }
      } else {
        $0.webhook = .with {
          $0.url = "http://127.0.0.1:\(port)/hooks/send"
          $0.signingSecret = "outgoing-secret"
        }
      }
    }
  }

  func statuses(_ database: PostgresClient) async throws -> [String: Int] {
    var counts: [String: Int] = [:]
    for try await (status, count) in try await database.query(
      "SELECT status, count(*)::int FROM delivery.messages GROUP BY status", logger: Logger(label: "test")
    ).decode((String, Int).self) {
      counts[status] = count
    }
    return counts
  }

  @Test func smtpSendsWithAuthReusesConnectionsAndSettlesBouncesAndRetries() async throws {
    try await withSMTPSink(username: "herald", password: "s3cret") { sink in
      try await withDelivery { delivery, database in
        _ = try await delivery.putProvider(Self.smtpProvider("smtp-main", sink: sink, username: "herald", password: "s3cret"))
        var messages = (1...30).map {
          Self.email("m-\($0)", to: "user\($0)@example.com", subject: $0 == 1 ? "Grüße aus Köln" : "Hello \($0)")
        }
        messages.append(Self.email("m-bounce", to: "bounce@example.com"))
        messages.append(Self.email("m-later", to: "later@example.com"))
        let accepted = try await delivery.enqueueMessages(.with { $0.messages = messages })
        #expect(accepted.accepted == 32)

        try await eventually("every message to settle") {
          let counts = try await statuses(database)
          return counts["sent"] == 30 && counts["bounced"] == 1 && counts["dead"] == 1
        }
        let received = sink.messages
        #expect(received.count == 30)
        #expect(Set(received.map(\.key)).count == 30)
        #expect(received.allSatisfy { $0.authenticated && $0.from == "news@herald.test" })
        #expect(received.first { $0.key == "m-1" }?.subject == "Grüße aus Köln")
        #expect(received.first { $0.key == "m-2" }?.body == "Body of m-2 — ünïcödé")
        // At most two sessions (max_connections), reused for every message.
        #expect(sink.connections <= 2)

        let bounced = try await delivery.listMessages(.with { $0.status = "bounced" }).messages
        #expect(bounced.first?.lastError.contains("550") == true)
        let dead = try await delivery.listMessages(.with { $0.status = "dead" }).messages
        #expect(dead.first?.attempts == 3)
        #expect(dead.first?.lastError.contains("dead-lettered after 3 attempts") == true)
        #expect(dead.first?.lastError.contains("451") == true)
        let history = try await delivery.getMessage(.with { $0.id = dead[0].id }).events.map(\.status)
        #expect(history == ["queued", "sending", "retrying", "sending", "retrying", "sending", "failed"])
        let sent = try await delivery.listMessages(
          .with {
            $0.status = "sent"
            $0.limit = 1
          }
        ).messages[0]
        #expect(sent.provider == "smtp-main" && !sent.providerMessageID.isEmpty)
      }
    }
  }

  @Test func smtpUpgradesWithStartTLSBeforeAuthenticating() async throws {
    try await withSMTPSink(username: "herald", password: "pw", tls: true) { sink in
      try await withDelivery { delivery, database in
        _ = try await delivery.putProvider(Self.smtpProvider("smtp-tls", sink: sink, username: "herald", password: "pw"))
        _ = try await delivery.enqueueMessages(.with { $0.messages = [Self.email("tls-1", to: "ada@example.com")] })
        try await eventually("the message to be sent") { try await statuses(database)["sent"] == 1 }
        #expect(sink.messages.first?.tls == true)
        #expect(sink.messages.first?.authenticated == true)
      }
    }
  }

  @Test func aFailingPrimaryOpensItsBreakerAndTrafficFailsOverWithNothingLost() async throws {
    try await withHTTPSink(reply: { _ in SinkReply(status: 503, body: #"{"error":"maintenance"}"#) }) { primaryPort, primary in
      try await withHTTPSink(reply: { request in SinkReply(status: 201, body: #"{"sid":"SM\#(request.form["Body"]?.count ?? 0)"}"#) }) {
        secondaryPort, secondary in
        try await withDelivery { delivery, database in
          _ = try await delivery.putProvider(Self.httpProvider("sms-primary", port: primaryPort, priority: 1))
          _ = try await delivery.putProvider(Self.httpProvider("sms-backup", port: secondaryPort, priority: 2))
          let messages = (1...40).map { Self.sms("s-\($0)", to: "+4915100000\(String(format: "%03d", $0))") }
          _ = try await delivery.enqueueMessages(.with { $0.messages = messages })
          try await eventually("every SMS to be sent") { try await statuses(database)["sent"] == 40 }

          let bodies = secondary.all.map { $0.form["Body"] ?? "" }
          #expect(bodies.count == 40)
          #expect(Set(bodies).count == 40)
          let first = try #require(secondary.all.first)
          #expect(first.form["From"] == "+15550000000")
          #expect(first.form["To"]?.hasPrefix("+49151") == true)
          #expect(first.headers["Authorization"] == "Basic " + Data("AC1:secret".utf8).base64EncodedString())
          #expect(first.headers["Idempotency-Key"]?.hasPrefix("s-") == true)
          // The breaker opened after a handful of failures; the primary was not tried for every message.
          #expect(primary.count < 40)

          let providers = try await delivery.listProviders(.init()).providers
          let status = try #require(providers.first { $0.name == "sms-primary" }?.status)
          #expect(status.breakerState == "open")
          #expect(status.errorRate == 1.0)
          #expect(status.lastError.contains("503"))
          #expect(providers.first { $0.name == "sms-backup" }?.status.breakerState == "closed")
          #expect(providers.first { $0.name == "sms-backup" }?.httpSms.password == "<redacted>")
          let sent = try await delivery.listMessages(
            .with {
              $0.status = "sent"
              $0.limit = 1
            }
          ).messages[0]
          #expect(sent.provider == "sms-backup" && sent.providerMessageID.hasPrefix("SM"))
        }
      }
    }
  }

  @Test func concurrentWorkersNeverOverspendACampaignBudget() async throws {
    // 7 ¢ a message and a 1,000 ¢ budget: 142 fit. Every tenth recipient is refused for good
    // (HTTP 400), so its reservation must come back for the others.
    try await withHTTPSink(reply: { request in
      let recipient = (request.json?["recipient"] as? String) ?? ""
      return recipient.hasSuffix("0@example.com") ? SinkReply(status: 400, body: #"{"error":"bad address"}"#) : SinkReply(status: 202)
    }) { port, sink in
      var settings = Self.settings(workers: 6)
      settings.batchSize = 7
      try await withDelivery(settings) { delivery, database in
        _ = try await delivery.putProvider(Self.httpProvider("hook", port: port, priority: 0, cost: 7, channel: .email))
        let campaign = UUID().uuidString.lowercased()
        for chunk in stride(from: 1, through: 400, by: 100) {
          _ = try await delivery.enqueueMessages(
            .with {
              $0.messages = (chunk..<(chunk + 100)).map { Self.email("\(campaign):\($0)", to: "r\($0)@example.com", campaign: campaign) }
              $0.spendCaps = [
                .with {
                  $0.campaignID = campaign
                  $0.budgetCents = 1000
                }
              ]
            })
        }
        try await eventually(timeout: .seconds(60), "the queue to drain") {
          let counts = try await statuses(database)
          return counts["queued", default: 0] + counts["sending", default: 0] == 0
        }
        let counts = try await statuses(database)
        #expect(counts["sent"] == 142)
        let cap = try await delivery.getSpendCap(.with { $0.campaignID = campaign })
        #expect(cap.spentCents == 994)
        #expect(cap.budgetCents == 1000)
        let accepted = sink.all.filter { !(($0.json?["recipient"] as? String) ?? "").hasSuffix("0@example.com") }
        #expect(accepted.count == 142)
        let failed = try await delivery.listMessages(
          .with {
            $0.status = "failed"
            $0.limit = 1000
          }
        ).messages
        #expect(failed.contains { $0.lastError.contains("spend cap reached") })
        #expect(failed.contains { $0.lastError.contains("400") })
        #expect(failed.count == 400 - 142)
      }
    }
  }

  @Test func deadLettersCanBeRequeuedAndThenSucceed() async throws {
    let healthy = Mutex(false)
    try await withHTTPSink(reply: { _ in healthy.withLock { $0 } ? SinkReply(status: 200, body: #"{"id":"wh-1"}"#) : SinkReply(status: 500)
    }) {
      port, _ in
      var settings = Self.settings()
      settings.breaker.minimumAttempts = 1000  // keep the breaker out of this test
      try await withDelivery(settings) { delivery, database in
        _ = try await delivery.putProvider(Self.httpProvider("hook", port: port, priority: 0, channel: .email))
        _ = try await delivery.enqueueMessages(.with { $0.messages = [Self.email("d-1", to: "ada@example.com")] })
        try await eventually("the message to be dead-lettered") { try await statuses(database)["dead"] == 1 }
        let dead = try await delivery.listMessages(.with { $0.status = "dead" }).messages
        #expect(dead[0].lastError.contains("500"))

        let refused = await #expect(throws: RPCError.self) {
          try await delivery.requeueMessages(.with { $0.status = "sent" })
        }
        #expect(refused?.code == .invalidArgument)
        healthy.withLock { $0 = true }
        let requeued = try await delivery.requeueMessages(.with { $0.ids = [dead[0].id] })
        #expect(requeued.requeued == 1)
        try await eventually("the requeued message to be sent") { try await statuses(database)["sent"] == 1 }
        let message = try await delivery.getMessage(.with { $0.id = dead[0].id }).message
        #expect(message.attempts == 1 && message.providerMessageID == "wh-1")
      }
    }
  }

  @Test func suppressedAddressesAreNeverSent() async throws {
    try await withHTTPSink { port, sink in
      var settings = Self.settings()
      settings.workers = 0
      try await withDelivery(settings) { delivery, database in
        _ = try await delivery.putProvider(Self.httpProvider("hook", port: port, priority: 0, channel: .email))
        _ = try await delivery.addSuppression(
          .with {
            $0.address = "Blocked@Example.com"
            $0.detail = "asked by phone"
          })
        let result = try await delivery.enqueueMessages(
          .with {
            $0.messages = [Self.email("x-1", to: "blocked@example.com"), Self.email("x-2", to: "late@example.com")]
          })
        #expect(result.suppressed == 1 && result.results[0].suppressed && !result.results[1].suppressed)
        // Suppressed after it was queued: the claim catches it.
        _ = try await delivery.addSuppression(.with { $0.address = "late@example.com" })
        let store = DeliveryStore(client: database, logger: Logger(label: "test"))
        let claimed = try await store.claim(limit: 10, lease: .seconds(30), token: UUID(), timeToLive: .seconds(3600))
        #expect(claimed.map(\.status) == ["suppressed"])
        #expect(try await statuses(database) == ["suppressed": 2])
        #expect(sink.count == 0)
        let listed = try await delivery.listSuppressions(.init()).suppressions.map(\.address)
        #expect(listed == ["blocked@example.com", "late@example.com"])
        #expect(try await delivery.removeSuppression(.with { $0.address = "late@example.com" }).removed)
      }
    }
  }

  @Test func providerWebhooksAreVerifiedAndMoveMessagesAndSuppressHardBounces() async throws {
    try await withHTTPSink(reply: { request in
      SinkReply(status: 200, body: #"{"id":"p-\#(request.json?["idempotency_key"] as? String ?? "")"}"#)
    }) {
      port, _ in
      try await withDelivery { delivery, database in
        var provider = Self.httpProvider("hook", port: port, priority: 0, channel: .email)
        provider.webhookSecret = "whsec"
        _ = try await delivery.putProvider(provider)
        _ = try await delivery.enqueueMessages(
          .with {
            $0.messages = [Self.email("w-1", to: "one@example.com"), Self.email("w-2", to: "two@example.com")]
          })
        try await eventually("both to be sent") { try await statuses(database)["sent"] == 2 }

        func post(_ json: String, secret: String = "whsec", at time: Date = Date()) async throws
          -> Herald_Delivery_V1_IngestProviderWebhookResponse
        {
          let body = Data(json.utf8)
          let signature = WebhookSignature.header(secret: secret, timestamp: Int(time.timeIntervalSince1970), body: body)
          return try await delivery.ingestProviderWebhook(
            .with {
              $0.provider = "hook"
              $0.body = body
              $0.signature = signature
            })
        }
        let applied = try await post(
          #"{"events":[{"type":"delivered","provider_message_id":"p-w-1"},{"type":"opened","provider_message_id":"p-w-1"},"#
            + #"{"type":"bounced","bounce":"hard","provider_message_id":"p-w-2","detail":"550 no such user"},"#
            + #"{"type":"delivered","provider_message_id":"p-unknown"}]}"#)
        #expect(applied.applied == 3 && applied.ignored == 1)
        #expect(try await statuses(database) == ["delivered": 1, "bounced": 1])
        #expect(try await delivery.listSuppressions(.init()).suppressions.map(\.reason) == ["hard_bounce"])
        let later = try await delivery.enqueueMessages(.with { $0.messages = [Self.email("w-3", to: "TWO@example.com")] })
        #expect(later.suppressed == 1)

        let forged = await #expect(throws: RPCError.self) { try await post(#"{"events":[]}"#, secret: "wrong") }
        #expect(forged?.code == .unauthenticated)
        let stale = await #expect(throws: RPCError.self) {
          try await post(#"{"events":[]}"#, at: Date().addingTimeInterval(-3600))
        }
        #expect(stale?.message.contains("away from now") == true)
        let malformed = await #expect(throws: RPCError.self) {
          try await post(#"{"events":[{"type":"exploded","message_id":"x"}]}"#)
        }
        #expect(malformed?.code == .invalidArgument && malformed?.field == "events[0].type")
      }
    }
  }

  /// After a worker stops, its expired lease is decided by the send journal: a send that never
  /// began goes back as it was; one that began is resent when its providers drop a second copy,
  /// else left unknown. The stopped worker's late outcome is not written.
  @Test func expiredLeasesAreDecidedByTheSendJournalAndStaleOutcomesAreNotWritten() async throws {
    var settings = Self.settings()
    settings.workers = 0
    // The replica's own housekeeping would reclaim the leases too; this test reclaims them itself.
    settings.refreshInterval = .seconds(3600)
    try await withDelivery(settings) { delivery, database in
      _ = try await delivery.enqueueMessages(
        .with {
          $0.messages = [
            Self.email("l-1", to: "a@example.com"), Self.email("l-2", to: "b@example.com"), Self.email("l-3", to: "c@example.com"),
          ]
        })
      let store = DeliveryStore(client: database, logger: Logger(label: "test"))
      let token = UUID()
      let claimed = try await store.claim(limit: 10, lease: .seconds(30), token: token, timeToLive: .seconds(3600))
      #expect(claimed.count == 3)
      let ids = Dictionary(uniqueKeysWithValues: claimed.map { ($0.message.idempotencyKey, $0.message.id) })
      let (began, resendable) = (try #require(ids["l-1"]), try #require(ids["l-2"]))
      // l-1 and l-2 began (l-2 at providers that drop a second copy); l-3 never did.
      let (_, begun) = try await store.settle(
        [], token: token, beginning: [began, resendable], resendable: [resendable], lastOfBatch: false)
      #expect(begun == [began, resendable])
      try await database.query(
        "UPDATE delivery.messages SET lease_expires_at = now() - interval '1 second' WHERE lease_token = \(token)",
        logger: Logger(label: "test"))
      let reclaimed = try await store.reclaimExpiredLeases(resendAll: false)
      #expect([reclaimed.requeued, reclaimed.resent, reclaimed.unknown] == [Int](repeating: 1, count: 3))
      // The reclaim deleted the batch's journal rows.
      let journal = try await database.query("SELECT count(*)::int FROM delivery.send_journal", logger: Logger(label: "test"))
        .decode(Int.self).elements()
      #expect(journal == [0])
      // The worker that held the lease comes back late: its outcome is not written.
      let written = try await store.settle(
        claimed.map { Settlement(id: $0.message.id, outcome: .sent(provider: "x", providerMessageID: nil, costCents: 0), detail: "late") },
        token: token)
      #expect(written.isEmpty)
      let rows = try await database.query(
        """
        SELECT m.idempotency_key, m.status, m.attempts, m.ambiguous,
          (SELECT e.status || ': ' || e.detail FROM delivery.delivery_events e WHERE e.message_id = m.id ORDER BY e.id DESC LIMIT 1)
        FROM delivery.messages m ORDER BY m.idempotency_key
        """, logger: Logger(label: "test")
      ).decode((String, String, Int, Bool, String).self).elements()
      #expect(rows.map(\.0) == ["l-1", "l-2", "l-3"])
      #expect(rows.map(\.1) == ["unknown", "queued", "queued"])
      // The attempt that never began is not counted.
      #expect(rows.map(\.2) == [1, 1, 0])
      #expect(rows.map(\.3) == [true, true, false])
      #expect(rows[0].4.hasPrefix("unknown: left unknown"), "\(rows[0].4)")
      #expect(rows[1].4.hasPrefix("retrying: sent again"), "\(rows[1].4)")
      #expect(rows[2].4.hasPrefix("deferred: back in the queue"), "\(rows[2].4)")
      #expect(try await delivery.getQueueStats(.init()).ambiguous == 2)
      // An operator decides to send the unknown one again.
      #expect(try await delivery.requeueMessages(.with { $0.status = "unknown" }).requeued == 1)
      #expect(try await statuses(database) == ["queued": 3])
      // A send whose lease already ran out (its batch took longer) does not begin; a reclaim
      // puts it back as never sent.
      let late = UUID()
      let lateClaim = try #require(try await store.claim(limit: 1, lease: .seconds(30), token: late, timeToLive: .seconds(3600)).first)
      try await database.query(
        "UPDATE delivery.messages SET lease_expires_at = now() - interval '1 second' WHERE lease_token = \(late)",
        logger: Logger(label: "test"))
      let (_, notBegun) = try await store.settle([], token: late, beginning: [lateClaim.message.id], resendable: [], lastOfBatch: false)
      #expect(notBegun.isEmpty)
      #expect(try await store.reclaimExpiredLeases(resendAll: false).requeued == 1)
    }
  }

  @Test func warmUpCapsDailyVolumeAndDefersTheRest() async throws {
    try await withHTTPSink { port, sink in
      try await withDelivery { delivery, database in
        _ = try await delivery.putWarmupSchedule(
          .with {
            $0.sendingIdentity = "pool-a"
            $0.dailyCaps = [3, 10, 50]
          })
        var provider = Self.httpProvider("hook", port: port, priority: 0, channel: .email)
        provider.sendingIdentity = "pool-a"
        _ = try await delivery.putProvider(provider)
        _ = try await delivery.enqueueMessages(.with { $0.messages = (1...5).map { Self.email("wu-\($0)", to: "u\($0)@example.com") } })
        try await eventually("three to be sent and two deferred") {
          let counts = try await statuses(database)
          let deferred =
            try await database.query(
              "SELECT count(*)::int FROM delivery.messages WHERE status = 'queued' AND not_before > now() + interval '1 minute' AND attempts = 0",
              logger: Logger(label: "test")
            ).decode(Int.self).elements().first ?? 0
          return counts["sent"] == 3 && deferred == 2
        }
        #expect(sink.count == 3)
        let schedule = try await delivery.listWarmupSchedules(.init()).schedules[0]
        #expect(schedule.today == 1 && schedule.sentToday == 3)
      }
    }
  }

  @Test func smtpSignsInWithLoginWhenPlainIsNotOffered() async throws {
    try await withSMTPSink(username: "herald", password: "pw", loginOnly: true) { sink in
      try await withDelivery { delivery, database in
        _ = try await delivery.putProvider(Self.smtpProvider("smtp-login", sink: sink, username: "herald", password: "pw"))
        _ = try await delivery.enqueueMessages(.with { $0.messages = [Self.email("login-1", to: "ada@example.com")] })
        try await eventually("the message to be sent") { try await statuses(database)["sent"] == 1 }
        #expect(sink.messages.first?.authenticated == true)
      }
    }
  }

  /// Says "wait" for one provider, as the rate-limit service will for an exhausted limit.
  struct OverLimit: SendThrottle {
    let provider: String
    func delays(_ queries: [ThrottleQuery]) async -> [Duration?] {
      queries.map { $0.provider == provider ? .seconds(600) : nil }
    }
  }

  @Test func anOverLimitAnswerDelaysTheMessageWithoutFailingIt() async throws {
    try await withHTTPSink { port, sink in
      try await withDelivery(throttle: OverLimit(provider: "hook")) { delivery, database in
        _ = try await delivery.putProvider(Self.httpProvider("hook", port: port, priority: 0, channel: .email))
        _ = try await delivery.enqueueMessages(.with { $0.messages = [Self.email("rl-1", to: "ada@example.com")] })
        try await eventually("the message to be delayed") {
          let delayed =
            try await database.query(
              """
              SELECT count(*)::int FROM delivery.messages
              WHERE status = 'queued' AND attempts = 0 AND not_before > now() + interval '5 minutes'
              """, logger: Logger(label: "test")
            ).decode(Int.self).elements().first ?? 0
          return delayed == 1
        }
        #expect(sink.count == 0)
        let id = try await delivery.listMessages(.init()).messages[0].id
        let events = try await delivery.getMessage(.with { $0.id = id }).events
        #expect(events.map(\.status) == ["queued", "sending", "deferred"])
        #expect(events.last?.detail.contains("rate limit") == true)
      }
    }
  }

  @Test func badProviderDefinitionsAreRefusedNamingTheField() async throws {
    var settings = Self.settings()
    settings.workers = 0
    try await withDelivery(settings) { delivery, _ in
      let cases: [(Herald_Delivery_V1_Provider, String)] = [
        (
          .with {
            $0.name = "Bad Name"
            $0.channel = .email
            $0.webhook = .with { $0.url = "http://x.test" }
          }, "name"
        ),
        (
          .with {
            $0.name = "a"
            $0.channel = .email
          }, "settings"
        ),
        (
          .with {
            $0.name = "a"
            $0.channel = .sms
            $0.smtp = .with {
              $0.host = "h"
              $0.fromAddress = "a@b.c"
            }
          }, "channel"
        ),
        (
          .with {
            $0.name = "a"
            $0.channel = .email
            $0.smtp = .with {
              $0.host = "h"
              $0.fromAddress = "nobody"
            }
          }, "smtp.from_address"
        ),
        (
          .with {
            $0.name = "a"
            $0.channel = .sms
            $0.httpSms = .with {
              $0.url = "ftp://x"
              $0.from = "H"
            }
          }, "http_sms.url"
        ),
        (
          .with {
            $0.name = "a"
            $0.channel = .email
            $0.costCents = -1
            $0.webhook = .with { $0.url = "http://x.test" }
          }, "cost_cents"
        ),
      ]
      for (provider, field) in cases {
        let error = await #expect(throws: RPCError.self) { try await delivery.putProvider(provider) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.field == field, "expected \(field), got \(error?.field ?? "none"): \(error?.message ?? "")")
      }
    }
  }

  @Test func theProvidersFileNamesTheBadEntry() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("providers-\(UUID().uuidString).json").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try #"""
    {"providers": [
      {"name": "smtp-main", "channel": "CHANNEL_EMAIL", "smtp": {"host": "smtp.example.com", "fromAddress": "a@example.com"}},
      {"name": "sms", "channel": "CHANNEL_SMS", "httpSms": {"url": "https://sms.example.com/send"}}
    ]}
    """#.write(toFile: path, atomically: true, encoding: .utf8)
    #expect(throws: ConfigFileError.self) { try ProviderConfig.loadFile(path) }
    do {
      _ = try ProviderConfig.loadFile(path)
    } catch {
      #expect("\(error)".contains("providers[1].http_sms.from is empty"))
    }
    try #"{"providers": [{"name": "x", "colour": "blue"}]}"#.write(toFile: path, atomically: true, encoding: .utf8)
    do {
      _ = try ProviderConfig.loadFile(path)
      Issue.record("an unknown field was accepted")
    } catch {
      #expect("\(error)".contains("is not valid"))
    }
  }
}
