import Foundation
import GRPCCore
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Testing

/// What the delivery service refuses or normalises before it stores anything: values that would
/// reach an SMTP command or an HTTP or e-mail header with a line break in them, secrets put back
/// as the redaction marker, white space around warm-up identities and suppressed addresses; and
/// the figures a metrics scrape reads from the store and the registry.
@Suite(.timeLimit(.minutes(5))) struct DeliveryValidationTests {
  typealias Worker = DeliveryWorkerTests

  /// Whether `error` is INVALID_ARGUMENT naming `field`.
  static func refused(_ error: any Error, _ field: String) -> Bool {
    let (code, named) = rpcError(error)
    return code == .invalidArgument && named == field
  }

  /// Which providers a send cut off mid-way (or by a crash) may go to again: the HTTP kinds, which
  /// carry the Idempotency-Key, and SMTP only when its settings say so.
  @Test func onlyProvidersThatDropOrAllowASecondCopyResendUnconfirmedSends() throws {
    var smtp = Herald_Delivery_V1_Provider.with {
      $0.name = "smtp"
      $0.channel = .email
      $0.smtp = .with {
        $0.host = "127.0.0.1"
        $0.fromAddress = "news@herald.test"
      }
    }
    #expect(try ProviderConfig(validating: smtp).resendsUnconfirmed == false)
    smtp.smtp.resendUnconfirmed = true
    #expect(try ProviderConfig(validating: smtp).resendsUnconfirmed == true)
    #expect(try ProviderConfig(validating: Worker.httpProvider("sms", port: 9, priority: 0)).resendsUnconfirmed == true)
    #expect(try ProviderConfig(validating: Worker.httpProvider("hook", port: 9, priority: 0, channel: .email)).resendsUnconfirmed == true)
  }

  @Test func lineBreaksAndControlCharactersInProviderSettingsAreRefusedNamingTheField() async throws {
    try await Worker().withDelivery(Worker.settings(workers: 0)) { delivery, database in
      let smtp = Herald_Delivery_V1_SmtpSettings.with {
        $0.host = "smtp.example.com"
        $0.fromAddress = "news@example.com"
      }
      let sms = Herald_Delivery_V1_HttpSmsSettings.with {
        $0.url = "https://sms.example.com/send"
        $0.from = "Herald"
      }
      func email(_ change: (inout Herald_Delivery_V1_SmtpSettings) -> Void) -> Herald_Delivery_V1_Provider {
        .with {
          $0.name = "mail"
          $0.channel = .email
          $0.smtp = smtp
          change(&$0.smtp)
        }
      }
      func text(_ change: (inout Herald_Delivery_V1_HttpSmsSettings) -> Void) -> Herald_Delivery_V1_Provider {
        .with {
          $0.name = "text"
          $0.channel = .sms
          $0.httpSms = sms
          change(&$0.httpSms)
        }
      }
      let cases: [(Herald_Delivery_V1_Provider, String)] = [
        (email { $0.heloName = "mail.example.com\r\nRCPT TO:<victim@example.com>" }, "smtp.helo_name"),
        (email { $0.username = "herald\r\nMAIL FROM:<x@example.com>" }, "smtp.username"),
        (email { $0.host = "smtp.example.com\n" }, "smtp.host"),
        // A control character that is not white space, which the address pattern let through.
        (email { $0.fromAddress = "news@example.com\u{1}" }, "smtp.from_address"),
        (text { $0.bearerToken = "token\r\nX-Injected: 1" }, "http_sms.bearer_token"),
        (text { $0.username = "AC1\n" }, "http_sms.username"),
        (text { $0.from = "Herald\u{7f}" }, "http_sms.from"),
        (text { $0.url = "https://sms.example.com/send\r\nX-Injected: 1" }, "http_sms.url"),
        (
          .with {
            $0.name = "hook"
            $0.channel = .push
            $0.webhook = .with { $0.url = "https://hooks.example.com/\u{7f}x" }
          }, "webhook.url"
        ),
      ]
      for (provider, field) in cases {
        let error = await #expect(throws: RPCError.self) { try await delivery.putProvider(provider) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.field == field, "expected \(field), got \(error?.field ?? "none"): \(error?.message ?? "")")
        #expect(error?.message.contains("one line without control characters") == true, "\(error?.message ?? "")")
      }
      // The same values without the line breaks are fine.
      _ = try await delivery.putProvider(
        email {
          $0.heloName = "mail.example.com"
          $0.username = "herald"
        })
      _ = try await delivery.putProvider(text { $0.bearerToken = "token" })
      let stored = try await database.query("SELECT count(*)::int FROM delivery.providers", logger: Logger(label: "test"))
        .decode(Int.self).elements().first
      #expect(stored == 2)
    }
  }

  @Test func theProvidersFileRefusesLineBreaksInHeaderValues() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("providers-\(UUID().uuidString).json").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try #"""
    {"providers": [
      {"name": "smtp-main", "channel": "CHANNEL_EMAIL", "smtp": {"host": "smtp.example.com", "fromAddress": "a@example.com",
        "heloName": "mail.example.com\r\nRSET"}}
    ]}
    """#.write(toFile: path, atomically: true, encoding: .utf8)
    do {
      _ = try ProviderConfig.loadFile(path)
      Issue.record("a HELO name with a line break was accepted")
    } catch {
      #expect("\(error)".contains("providers[0].smtp.helo_name must be one line without control characters"), "\(error)")
    }
  }

  @Test func lineBreaksInAMessagesHeaderValuesAreRefusedNamingTheField() async throws {
    try await Worker().withDelivery(Worker.settings(workers: 0)) { delivery, _ async throws in
      var key = Worker.email("k-1", to: "ada@example.com")
      key.idempotencyKey = "k-1\r\nX-Injected: 1"
      var subject = Worker.email("k-2", to: "ada@example.com")
      subject.subject = "Hello\r\nBcc: everyone@example.com"
      var recipient = Worker.email("k-3", to: "ada@example.com>\r\nRCPT TO:<victim@example.com")
      recipient.subject = "Hello"
      let cases: [(Herald_Delivery_V1_OutboundMessage, String)] = [
        (key, "idempotency_key"), (subject, "subject"), (recipient, "recipient"),
      ]
      for (message, field) in cases {
        await #expect {
          _ = try await delivery.enqueueMessages(.with { $0.messages = [Worker.email("ok", to: "b@example.com"), message] })
        } throws: {
          Self.refused($0, "messages[1].\(field)")
        }
        await #expect { _ = try await delivery.sendMessage(message) } throws: { Self.refused($0, field) }
      }
      // A tab, an escape and DEL are control characters too.
      var tab = Worker.email("k-4", to: "ada@example.com")
      tab.subject = "Hello\tthere"
      var escape = Worker.email("k-5", to: "ada@example.com")
      escape.subject = "Hello\u{1b}[2Jthere"
      var delete = Worker.email("k-5", to: "ada@example.com")
      delete.idempotencyKey = "k-5\u{7f}"
      for (message, field) in [(tab, "subject"), (escape, "subject"), (delete, "idempotency_key")] {
        await #expect { _ = try await delivery.sendMessage(message) } throws: { Self.refused($0, field) }
      }
      #expect(try await delivery.getQueueStats(.init()).total == 0)
      // Other Unicode is fine (the REST contract takes it too).
      #expect(
        try await delivery.sendMessage(Worker.email("k-6", to: "ada@example.com", subject: "Grüße — ünïcödé\u{85}")).duplicate == false)
    }
  }

  @Test func aWebhookEventHoldingNULIsRefusedNamingTheFieldAndNothingIsApplied() async throws {
    try await Worker().withDelivery(Worker.settings(workers: 0)) { delivery, database in
      var provider = Worker.httpProvider("hook", port: 1, priority: 0, channel: .email)
      provider.webhookSecret = "whsec"
      _ = try await delivery.putProvider(provider)
      let queued = try await delivery.enqueueMessages(.with { $0.messages = [Worker.email("n-1", to: "ada@example.com")] })
      let id = try #require(queued.results.first?.messageID)
      for (field, json) in [
        ("detail", #"{"events":[{"type":"opened","message_id":"\#(id)","detail":"a\u0000b"}]}"#),
        ("provider_message_id", #"{"events":[{"type":"opened","provider_message_id":"p\u0000"}]}"#),
      ] {
        let body = Data(json.utf8)
        let signature = WebhookSignature.header(secret: "whsec", timestamp: Int(Date().timeIntervalSince1970), body: body)
        await #expect {
          _ = try await delivery.ingestProviderWebhook(
            .with {
              $0.provider = "hook"
              $0.body = body
              $0.signature = signature
            })
        } throws: {
          Self.refused($0, "events[0].\(field)")
        }
      }
      let events = try await database.query(
        "SELECT count(*)::int FROM delivery.delivery_events WHERE status = 'opened'", logger: Logger(label: "test")
      )
      .decode(Int.self).elements()
      #expect(events == [0])
    }
  }

  @Test func aListedProviderPutBackKeepsItsStoredSecrets() async throws {
    try await withHTTPSink(reply: { _ in SinkReply(status: 201, body: #"{"sid":"SM1"}"#) }) { port, sink in
      try await Worker().withDelivery { delivery, database in
        var provider = Worker.httpProvider("sms-main", port: port, priority: 1)
        provider.webhookSecret = "whsec"
        _ = try await delivery.putProvider(provider)
        var listed = try #require(try await delivery.listProviders(.init()).providers.first)
        #expect(listed.httpSms.password == ProviderConfig.redactionMarker)
        #expect(listed.webhookSecret == ProviderConfig.redactionMarker)
        // A client changes one setting of what it listed and puts it back, secrets still redacted.
        listed.priority = 2
        let answer = try await delivery.putProvider(listed)
        #expect(answer.priority == 2 && answer.httpSms.password == ProviderConfig.redactionMarker)

        let rows = try await database.query(
          """
          SELECT definition->'httpSms'->>'password', definition->>'webhookSecret', priority FROM delivery.providers
          WHERE name = 'sms-main'
          """, logger: Logger(label: "test")
        ).decode((String?, String?, Int).self).elements()
        // Stored sealed (SPEC §10), and what was kept is the same secret.
        #expect(try rows.first?.0.map { String(decoding: try testSecrets.open($0), as: UTF8.self) } == "secret")
        #expect(try rows.first?.1.map { String(decoding: try testSecrets.open($0), as: UTF8.self) } == "whsec")
        #expect(rows.first?.2 == 2)
        // The provider still signs in with the stored password.
        _ = try await delivery.sendMessage(Worker.sms("r-1", to: "+4915100000001"))
        try await eventually("the SMS to be sent") { sink.count == 1 }
        #expect(sink.all.first?.headers["Authorization"] == "Basic " + Data("AC1:secret".utf8).base64EncodedString())
        // And its webhooks still verify against the stored secret.
        let body = Data(#"{"events":[]}"#.utf8)
        let signature = WebhookSignature.header(secret: "whsec", timestamp: Int(Date().timeIntervalSince1970), body: body)
        _ = try await delivery.ingestProviderWebhook(
          .with {
            $0.provider = "sms-main"
            $0.body = body
            $0.signature = signature
          })

        // A new secret replaces the stored one.
        listed.httpSms.password = "rotated"
        _ = try await delivery.putProvider(listed)
        let rotated =
          try await database.query(
            "SELECT definition->'httpSms'->>'password' FROM delivery.providers WHERE name = 'sms-main'", logger: Logger(label: "test")
          ).decode(String?.self).elements().first ?? nil
        #expect(try rotated.map { String(decoding: try testSecrets.open($0), as: UTF8.self) } == "rotated")

        // The marker where nothing is stored to keep is refused (what is stored does not allow
        // it), naming the field.
        func conflicts(_ error: any Error, _ field: String) -> Bool { rpcError(error) == (.failedPrecondition, field) }
        var fresh = Worker.httpProvider("sms-new", port: port, priority: 3)
        fresh.httpSms.password = ProviderConfig.redactionMarker
        await #expect { _ = try await delivery.putProvider(fresh) } throws: { conflicts($0, "http_sms.password") }
        var otherKind = Worker.httpProvider("sms-main", port: port, priority: 1, channel: .email)
        otherKind.webhook.signingSecret = ProviderConfig.redactionMarker
        await #expect { _ = try await delivery.putProvider(otherKind) } throws: { conflicts($0, "webhook.signing_secret") }
        let names = try await delivery.listProviders(.init()).providers.map(\.name)
        #expect(names == ["sms-main"])
      }
    }
  }

  /// Provider secrets at rest (SPEC §10): a secret an older version stored in clear still works,
  /// SealSecrets seals it online (and leaves what it cannot open, naming it), and after a key
  /// rotation moves every provider secret and DKIM key off the old key, so that it can be removed.
  /// Without HERALD_SECRETS_KEY no secret is stored at all.
  @Test func providerSecretsInClearAreSealedOnlineAndMovedOffARetiredKey() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    let old = try SecretBox("old:" + Data(repeating: 1, count: 32).base64EncodedString())
    let new = try SecretBox("new:" + Data(repeating: 2, count: 32).base64EncodedString())
    let both = try SecretBox(
      "new:" + Data(repeating: 2, count: 32).base64EncodedString() + ",old:" + Data(repeating: 1, count: 32).base64EncodedString())
    func settings(_ secrets: SecretBox) -> DeliverySettings {
      var settings = Worker.settings()
      settings.secrets = secrets
      return settings
    }
    func stored(_ database: PostgresClient) async throws -> [String: String] {
      var values: [String: String] = [:]
      let rows = try await database.query(
        "SELECT name, definition->'httpSms'->>'password' FROM delivery.providers UNION ALL SELECT selector, private_key FROM delivery.dkim_keys",
        logger: Logger(label: "test"))
      for try await (name, value) in rows.decode((String, String).self) { values[name] = value }
      return values
    }
    try await withHTTPSink(reply: { _ in SinkReply(status: 201, body: #"{"sid":"SM1"}"#) }) { port, sink in
      try await Worker().withDelivery(settings(old), databaseURL: url) { delivery, database in
        // As a version before sealing stored it, and one put now.
        let clear = try Worker.httpProvider("sms-clear", port: port, priority: 1).jsonString()
        try await database.query(
          "INSERT INTO delivery.providers (name, channel, priority, definition) VALUES ('sms-clear', 'sms', 1, \(clear)::jsonb)",
          logger: Logger(label: "test"))
        _ = try await delivery.putProvider(Worker.httpProvider("sms-sealed", port: port, priority: 2))
        _ = try await delivery.createDkimKey(
          .with {
            $0.domain = "example.com"
            $0.selector = "s1"
            $0.algorithm = .ed25519Sha256
          })
        var before = try await stored(database)
        #expect(before["sms-clear"] == "secret")
        #expect(before["sms-sealed"]?.hasPrefix("sealed:v1:old:") == true && before["s1"]?.hasPrefix("sealed:v1:old:") == true)
        // The providers file, applied at every start (also by older replicas' successors during a
        // roll-out), leaves a secret stored in clear as it is.
        try await DeliveryStore(client: database, logger: Logger(label: "test")).putProvider(
          named: "sms-clear", sealingWith: old, keepingClear: true
        ) { stored in
          try ProviderConfig(validating: Worker.httpProvider("sms-clear", port: port, priority: 1)).keepingStoredSecrets(of: stored)
        }
        #expect(try await stored(database)["sms-clear"] == "secret")
        // The clear one is in use as it is.
        try await eventually("the providers to be loaded") { try await delivery.listProviders(.init()).providers.count == 2 }
        _ = try await delivery.sendMessage(Worker.sms("c-1", to: "+4915100000001"))
        try await eventually("the SMS to be sent") { sink.count == 1 }
        #expect(sink.all.first?.headers["Authorization"] == "Basic " + Data("AC1:secret".utf8).base64EncodedString())

        // A secret sealed with a key nobody holds any more is left as it is, named.
        var lost = Worker.httpProvider("sms-lost", port: port, priority: 3)
        lost.httpSms.password = "sealed:v1:gone:AAAA"
        try await database.query(
          "INSERT INTO delivery.providers (name, channel, priority, definition) VALUES ('sms-lost', 'sms', 3, \(try lost.jsonString())::jsonb)",
          logger: Logger(label: "test"))
        let sealing = try await delivery.sealSecrets(.init())
        #expect(sealing.providersSealed == 1 && sealing.providersUnchanged == 1 && sealing.dkimKeysSealed == 0)
        #expect(sealing.failures.count == 1)
        #expect(sealing.failures.first?.contains("'sms-lost'") == true && sealing.failures.first?.contains("'gone'") == true)
        before = try await stored(database)
        #expect(before["sms-clear"]?.hasPrefix("sealed:v1:old:") == true)
        #expect(try old.open(before["sms-clear"] ?? "") == Data("secret".utf8))
        #expect(before["sms-lost"] == "sealed:v1:gone:AAAA")
        try await database.query("DELETE FROM delivery.providers WHERE name = 'sms-lost'", logger: Logger(label: "test"))
        // Again: nothing left to do.
        let again = try await delivery.sealSecrets(.init())
        #expect(again.providersSealed == 0 && again.providersUnchanged == 2 && again.failures.isEmpty)
      }

      // Rotation: the new key first, the old one still listed; then the old one removed.
      try await Worker().withDelivery(settings(both), databaseURL: url) { delivery, database in
        let sealing = try await delivery.sealSecrets(.init())
        #expect(sealing.providersSealed == 2 && sealing.dkimKeysSealed == 1 && sealing.failures.isEmpty)
        let after = try await stored(database)
        #expect(after.count == 3 && after.values.allSatisfy { $0.hasPrefix("sealed:v1:new:") })
      }
      try await Worker().withDelivery(settings(new), databaseURL: url) { delivery, database in
        for value in try await stored(database).values { _ = try new.open(value) }
        try await eventually("the providers to be loaded") { try await delivery.listProviders(.init()).providers.count == 2 }
        _ = try await delivery.sendMessage(Worker.sms("c-2", to: "+4915100000002"))
        try await eventually("the second SMS to be sent") { sink.count == 2 }
        #expect(sink.all.last?.headers["Authorization"] == "Basic " + Data("AC1:secret".utf8).base64EncodedString())
      }

      // No key: nothing sealed, no secret stored.
      try await Worker().withDelivery(settings(.none), databaseURL: url) { delivery, _ in
        for call in 0..<2 {
          let error = await #expect(throws: RPCError.self) {
            if call == 0 {
              _ = try await delivery.putProvider(Worker.httpProvider("sms-new", port: port, priority: 4))
            } else {
              _ = try await delivery.sealSecrets(.init())
            }
          }
          #expect(error?.code == .failedPrecondition && error?.message.contains("HERALD_SECRETS_KEY") == true)
        }
      }
    }
  }

  @Test func warmUpIdentitiesAndSuppressedAddressesAreStoredAsChecked() async throws {
    try await Worker().withDelivery(Worker.settings(workers: 0)) { delivery, database in
      let put = try await delivery.putWarmupSchedule(
        .with {
          $0.sendingIdentity = " pool-a\n"
          $0.dailyCaps = [3, 10]
        })
      #expect(put.sendingIdentity == "pool-a" && put.dailyCaps == [3, 10])
      #expect(try await delivery.listWarmupSchedules(.init()).schedules.map(\.sendingIdentity) == ["pool-a"])
      // Only line breaks and white space: empty, as the check said all along.
      await #expect {
        _ = try await delivery.putWarmupSchedule(
          .with {
            $0.sendingIdentity = "\n\t"
            $0.dailyCaps = [1]
          })
      } throws: {
        Self.refused($0, "sending_identity")
      }

      let added = try await delivery.addSuppression(.with { $0.address = "\tAda@Example.com\r\n" })
      #expect(added.address == "ada@example.com")
      await #expect { _ = try await delivery.addSuppression(.with { $0.address = "\n" }) } throws: { Self.refused($0, "address") }
      #expect(try await delivery.listSuppressions(.init()).suppressions.map(\.address) == ["ada@example.com"])
      let suppressed = try await delivery.sendMessage(Worker.email("s-1", to: "ada@example.com"))
      #expect(suppressed.suppressed)
      #expect(try await delivery.removeSuppression(.with { $0.address = "ADA@example.com\n" }).removed)
      let left = try await database.query("SELECT count(*)::int FROM delivery.suppressions", logger: Logger(label: "test"))
        .decode(Int.self).elements().first
      #expect(left == 0)
    }
  }

  /// `herald_delivery_queue_messages{status}` reads the queue's depth from the store; the
  /// breaker gauge of a provider that was deleted reads closed (the registry names it).
  @Test func theScrapedFiguresFollowTheQueueAndTheProviders() async throws {
    var settings = Worker.settings(workers: 0)
    // The replica's own housekeeping would reclaim the expired lease too; this test reclaims it itself.
    settings.refreshInterval = .seconds(3600)
    try await Worker().withDelivery(settings) { delivery, database in
      let store = DeliveryStore(client: database, logger: Logger(label: "test"))
      #expect(try await store.queueDepth() == ["queued": 0, "sending": 0, "dead": 0, "unknown": 0, "held": 0])
      _ = try await delivery.enqueueMessages(.with { $0.messages = (1...4).map { Worker.email("q-\($0)", to: "u\($0)@example.com") } })
      #expect(try await store.queueDepth() == ["queued": 4, "sending": 0, "dead": 0, "unknown": 0, "held": 0])

      let dying = UUID()
      let dead = try await store.claim(limit: 1, lease: .seconds(30), token: dying, timeToLive: .seconds(3600))
      try await store.settle(dead.map { Settlement(id: $0.message.id, outcome: .dead, detail: "test") }, token: dying)
      let stopping = UUID()
      let expiring = try #require(try await store.claim(limit: 1, lease: .seconds(30), token: stopping, timeToLive: .seconds(3600)).first)
      // Its send began (it may have been sent), then its lease ran out (moved into the past,
      // instead of waiting for it).
      _ = try await store.settle([], token: stopping, beginning: [expiring.message.id], resendable: [], lastOfBatch: false)
      try await database.query(
        "UPDATE delivery.messages SET lease_expires_at = now() - interval '1 second' WHERE id = \(expiring.message.id)",
        logger: Logger(label: "test"))
      #expect(try await store.reclaimExpiredLeases(resendAll: false).unknown == 1)
      _ = try await store.claim(limit: 1, lease: .seconds(30), token: UUID(), timeToLive: .seconds(3600))
      #expect(try await store.queueDepth() == ["queued": 1, "sending": 1, "dead": 1, "unknown": 1, "held": 0])

      let registry = ProviderRegistry(store: store, secrets: testSecrets)
      for name in ["hook-a", "hook-b"] {
        try await store.putProvider(named: name, sealingWith: testSecrets) { _ in
          try ProviderConfig(validating: Worker.httpProvider(name, port: 9, priority: 0, channel: .email))
        }
      }
      try await registry.refresh()
      #expect(registry.all.map(\.config.name) == ["hook-a", "hook-b"] && registry.removed.isEmpty)
      #expect(try await store.deleteProvider(named: "hook-a"))
      try await registry.refresh()
      #expect(registry.all.map(\.config.name) == ["hook-b"] && registry.removed == ["hook-a"])
      try await store.putProvider(named: "hook-a", sealingWith: testSecrets) { _ in
        try ProviderConfig(validating: Worker.httpProvider("hook-a", port: 9, priority: 0, channel: .email))
      }
      try await registry.refresh()
      #expect(registry.removed.isEmpty)
      await registry.shutdown()
    }
  }
}
