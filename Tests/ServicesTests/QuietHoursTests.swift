import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
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

/// Quiet hours (SPEC §11): an SMS due at night in the recipient's time zone waits, queued, until
/// the window opens there; the zone is the subscriber's or the number's (libphonenumber's data,
/// checked against the phonenumbers package); windows only narrow.
@Suite(.timeLimit(.minutes(5))) struct QuietHoursTests {
  typealias Delivery = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  @Test func windowsNarrowAndRunPastMidnight() throws {
    let standard = QuietWindow.standard
    #expect(standard.description == "08:00–21:00")
    #expect(standard.intersection(try #require(QuietWindow(text: "09:00-22:00"))) == QuietWindow(start: 540, end: 1260))
    #expect(standard.intersection(try #require(QuietWindow(text: "00:00-00:00"))) == standard)
    // An evening window past midnight shares 20:00–21:00 with the standard one.
    #expect(standard.intersection(try #require(QuietWindow(text: "20:00-02:00"))) == QuietWindow(start: 1200, end: 1260))
    // Two stretches in common: the longer one.
    let wide = try #require(QuietWindow(text: "18:00-12:00"))
    #expect(try #require(QuietWindow(text: "06:00-20:00")).intersection(wide) == QuietWindow(start: 360, end: 720))
    #expect(standard.intersection(try #require(QuietWindow(text: "22:00-07:00"))) == nil)
    #expect(try #require(QuietWindow(text: "08:00-24:00")).end == 0)
    for bad in ["8:00-21:00", "08:00", "24:00-08:00", "08:60-09:00", "08:00-24:01"] { #expect(QuietWindow(text: bad) == nil, "\(bad)") }
  }

  /// Herald gives what libphonenumber's Python port gives (`time_zones_for_number`) for numbers of
  /// many countries, area codes and kinds: a landline its area's zone, a mobile in a country whose
  /// mobiles tell nothing of where they are every zone of the country; every zone in the data is
  /// one PostgreSQL knows.
  @Test func aNumbersTimeZonesAreLibphonenumbersAndPostgreSQLKnowsThem() async throws {
    let numbers = [
      "+14155550101", "+12125550101", "+13125550101", "+18085550101", "+19075550101", "+16045550101", "+15145550101",
      "+12085550101", "+12082010101", "+18005550101", "+447911123456", "+33612345678", "+4915112345678", "+61412345678",
      "+61212345678", "+61812345678", "+5511912345678", "+5592912345678", "+79161234567", "+74232123456", "+8613812345678",
      "+819012345678", "+919812345678", "+27821234567", "+525512345678", "+5216641234567", "+35312345678", "+99912345678",
      "+61491570156", "+61732123456", "+61893123456", "+73952123456", "+79141234567", "+18885550101", "+15555550101",
      "+5511987654321", "+6281234567890", "+642012345678", "+34612345678", "+34928123456",
    ]
    let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
    let script = """
      import json, sys, phonenumbers
      from phonenumbers import timezone
      out = []
      for number in sys.argv[1:]:
          try:
              parsed = phonenumbers.parse(number)
              zones = list(timezone.time_zones_for_number(parsed))
              # A number libphonenumber finds invalid: Herald takes its whole country (as for one
              # that is not geographic), where libphonenumber knows nothing.
              if zones == ["Etc/Unknown"]:
                  zones = list(timezone._country_level_time_zones_for_number(parsed))
          except phonenumbers.NumberParseException:
              zones = []
          out.append([] if zones == ["Etc/Unknown"] else zones)
      print(json.dumps(out))
      """
    let (status, output) = try await SpawnedProcess.run(python, ["-c", script] + numbers)
    guard status == 0, let line = output.split(separator: "\n").last,
      let expected = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String]]
    else { throw TestSetupError("phonenumbers failed (run scripts/test, which installs it): \(output)") }
    for (number, zones) in zip(numbers, expected) {
      #expect((PhoneTimeZones.zones(of: number) ?? []).sorted() == zones.sorted(), "\(number)")
    }
    #expect(PhoneTimeZones.zones(of: "+14155550101") == ["America/Los_Angeles"])
    #expect(PhoneTimeZones.zones(of: "4155550101x") == nil)

    let url = try await TestPostgres.shared.makeDatabase()
    try await withDatabase(url) { database async throws in
      let known = Set(
        try await database.query("SELECT name FROM pg_timezone_names", logger: Logger(label: "test")).decode(String.self).elements())
      let used = Set(PhoneTimeZones.zoneNames)
      #expect(used.subtracting(known).isEmpty, "PostgreSQL does not know \(used.subtracting(known).sorted())")
    }
  }

  /// Runs a delivery service without workers (the test claims, at the times it passes in).
  func withDelivery(_ body: (Delivery, DeliveryStore) async throws -> Void) async throws {
    try await withDelivery { delivery, store, _, _ in try await body(delivery, store) }
  }

  func withDelivery(_ body: (Delivery, DeliveryStore, _ port: Int, _ url: String) async throws -> Void) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    var settings = DeliveryWorkerTests.settings(workers: 0)
    settings.refreshInterval = .milliseconds(100)
    settings.smsQuietHours = .standard
    var definition = DeliveryDefinition.make(settings: settings)
    definition.readinessDependencies = []
    definition.makeWorkers = { _ in [] }
    try await withRunningService(definition, databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        try await withDatabase(url) { database async throws in
          try await body(Delivery(wrapping: client), DeliveryStore(client: database, logger: Logger(label: "test.store")), port, url)
        }
      }
    }
  }

  static func at(_ text: String) throws -> Date { try Date(text, strategy: .iso8601) }

  @Test func aNightTimeTextWaitsForEightInTheRecipientsZoneAndGoesOutThen() async throws {
    try await withDelivery { delivery, store in
      func claim(_ time: String) async throws -> [String: String] {
        let claimed = try await store.claim(
          limit: 50, lease: .seconds(60), token: UUID(), timeToLive: .seconds(72 * 3600), channels: ["sms"], at: try Self.at(time))
        return Dictionary(uniqueKeysWithValues: claimed.map { ($0.message.idempotencyKey, $0.status) })
      }
      // Due 06:30 UTC: 22:30 the evening before in San Francisco, 07:30 in Berlin.
      let due = Google_Protobuf_Timestamp(date: try Self.at("2027-01-15T06:30:00Z"))
      var night = DeliveryWorkerTests.sms("night", to: "+14155550101")
      night.notBefore = due
      var berlin = DeliveryWorkerTests.sms("berlin", to: "+14155550102")
      berlin.timeZone = "Europe/Berlin"
      berlin.notBefore = due
      var code = DeliveryWorkerTests.sms("code", to: "+14155550103")
      code.ignoreQuietHours = true
      code.notBefore = due
      var never = DeliveryWorkerTests.sms("never", to: "+14155550104")
      never.quietHours = .with {
        $0.start = "22:00"
        $0.end = "07:00"
      }
      // An area code libphonenumber does not know: any of North America's zones, Guam to Samoa,
      // whose clocks are 10.5 hours apart: never all inside an 8-hour window at once.
      var nowhere = DeliveryWorkerTests.sms("nowhere", to: "+15555550101")
      nowhere.quietHours = .with {
        $0.start = "09:00"
        $0.end = "17:00"
      }
      // Due at noon in San Francisco, but claimed only at 22:30 (a backlog): the claim defers it.
      var late = DeliveryWorkerTests.sms("late", to: "+14155550105")
      late.notBefore = Google_Protobuf_Timestamp(date: try Self.at("2027-01-15T20:00:00Z"))
      let result = try await delivery.enqueueMessages(.with { $0.messages = [night, berlin, code, never, nowhere, late] })
      #expect(result.accepted == 6)

      // Queued for when the window opens in the recipient's zone, saying so.
      let waiting = try await delivery.getMessage(.with { $0.id = result.results[0].messageID })
      #expect(waiting.message.status == "queued")
      #expect(
        waiting.events.last?.detail == "quiet hours (08:00–21:00 in America/Los_Angeles): waits until 2027-01-15T16:00:00Z",
        "\(waiting.events)")
      #expect(try await claim("2027-01-15T06:30:00Z") == ["code": "sending"])
      // Berlin opens at 07:00 UTC, San Francisco at 16:00 UTC, and not a second earlier.
      #expect(try await claim("2027-01-15T06:59:59Z").isEmpty)
      #expect(try await claim("2027-01-15T07:00:00Z") == ["berlin": "sending"])
      #expect(try await claim("2027-01-15T15:59:59Z").isEmpty)
      #expect(try await claim("2027-01-15T16:00:00Z") == ["night": "sending"])
      #expect(try await claim("2027-01-16T06:30:00Z") == ["late": "deferred"])
      let deferred = try await delivery.getMessage(.with { $0.id = result.results[5].messageID })
      #expect(
        deferred.message.status == "queued"
          && deferred.events.last?.detail == "quiet hours (08:00-21:00 in America/Los_Angeles): waits until 2027-01-16T16:00:00Z",
        "\(deferred.events)")
      #expect(try await claim("2027-01-16T16:00:00Z") == ["late": "sending"])
      let nowhereMessage = try await delivery.getMessage(.with { $0.id = result.results[4].messageID }).message
      #expect(nowhereMessage.status == "failed" && nowhereMessage.lastError.contains("never open at once"), "\(nowhereMessage.lastError)")
      // A window that shares no minute with the installation's can never go out: failed, saying why.
      let impossible = try await delivery.getMessage(.with { $0.id = result.results[3].messageID })
      #expect(impossible.message.status == "failed")
      #expect(impossible.message.lastError.hasPrefix("its quiet hours leave no time of day to deliver"), "\(impossible.message.lastError)")

      // Bad input names the field.
      for (message, field) in [
        (
          {
            var m = DeliveryWorkerTests.sms("tz", to: "+14155550101")
            m.timeZone = "Mars/Olympus"
            return m
          }(), "time_zone"
        ),
        (
          {
            var m = DeliveryWorkerTests.email("mail", to: "a@example.com")
            m.timeZone = "Europe/Berlin"
            return m
          }(), "time_zone"
        ),
        (
          {
            var m = DeliveryWorkerTests.sms("camp", to: "+14155550101", campaign: UUID().uuidString)
            m.ignoreQuietHours = true
            return m
          }(),
          "ignore_quiet_hours"
        ),
        (
          {
            var m = DeliveryWorkerTests.sms("qh", to: "+14155550101")
            m.quietHours = .with {
              $0.start = "8:00"
              $0.end = "21:00"
            }
            return m
          }(),
          "quiet_hours"
        ),
      ] {
        do {
          _ = try await delivery.sendMessage(message)
          Issue.record("\(message.idempotencyKey) was queued")
        } catch let error as RPCError {
          #expect(error.code == .invalidArgument && error.field == field, "\(error)")
        }
      }
    }
  }

  /// A provider's own window narrows every text queued while it is enabled.
  @Test func aProvidersWindowNarrowsTheInstallations() async throws {
    try await withDelivery { delivery, store in
      _ = try await delivery.putProvider(
        .with {
          $0.name = "sms-main"
          $0.channel = .sms
          $0.httpSms = .with {
            $0.url = "http://127.0.0.1:1/send"
            $0.from = "+15550001111"
          }
          $0.quietHours = .with {
            $0.start = "09:00"
            $0.end = "20:00"
          }
        })
      do {
        _ = try await delivery.putProvider(
          .with {
            $0.name = "mail"
            $0.channel = .email
            $0.webhook = .with { $0.url = "http://127.0.0.1:1/send" }
            $0.quietHours = .with {
              $0.start = "09:00"
              $0.end = "20:00"
            }
          })
        Issue.record("an e-mail provider took quiet hours")
      } catch let error as RPCError {
        #expect(error.field == "quiet_hours")
      }
      var text = DeliveryWorkerTests.sms("early", to: "+33612345678")
      text.notBefore = Google_Protobuf_Timestamp(date: try Self.at("2027-07-01T06:30:00Z"))  // 08:30 in Paris (summer time)
      _ = try await delivery.sendMessage(text)
      let claimed = try await store.claim(
        limit: 10, lease: .seconds(60), token: UUID(), timeToLive: .seconds(72 * 3600), channels: ["sms"],
        at: try Self.at("2027-07-01T06:30:00Z"))
      // Queued for 09:00 in Paris already: nothing due at 08:30.
      #expect(claimed.isEmpty)
      let message = try await delivery.listMessages(.init()).messages.first
      #expect(
        message?.lastError == "quiet hours (09:00–20:00 in Europe/Paris): waits until 2027-07-01T07:00:00Z",
        "\(String(describing: message))")
    }
  }

  /// An SMS campaign's window and its subscriber's time zone attribute reach delivery with each text.
  @Test func aCampaignsWindowAndTheSubscribersZoneGoWithItsTexts() async throws {
    try await withDelivery { delivery, store, deliveryPort, url in
      var definition = CampaignDefinition.definition(settings: CampaignSettings())
      definition.readinessDependencies = []
      definition.makeWorkers = { _ in [] }
      try await withRunningService(
        definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { client async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            try await withDatabase(url) { database async throws in
              let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: client)
              let list = try await campaign.createList(.with { $0.name = "texts" })
              var ids: [String] = []
              for (phone, attributes) in [("+14155550101", #"{"time_zone": "Asia/Tokyo"}"#), ("+14155550102", "{}")] {
                let subscriber = try await campaign.createSubscriber(
                  .with {
                    $0.phone = phone
                    $0.attributesJson = attributes
                    $0.smsConsent = .with {
                      $0.subscribed = true
                      $0.source = "form"
                    }
                  })
                ids.append(subscriber.id)
              }
              _ = try await campaign.addListMembers(
                .with {
                  $0.listID = list.id
                  $0.subscriberIds = ids
                })
              let template = try await campaign.createTemplate(
                .with {
                  $0.name = "hi"
                  $0.channel = "sms"
                  $0.body = "Hi! Reply STOP to opt out."
                })
              do {
                _ = try await campaign.createCampaign(
                  .with {
                    $0.name = "mail"
                    $0.channel = "email"
                    $0.listID = list.id
                    $0.templateID = template.id
                    $0.quietHours = .with {
                      $0.start = "10:00"
                      $0.end = "18:00"
                    }
                  })
                Issue.record("an e-mail campaign took quiet hours")
              } catch let error as RPCError {
                #expect(error.field == "quiet_hours", "\(error)")
              }
              let created = try await campaign.createCampaign(
                .with {
                  $0.name = "texts"
                  $0.channel = "sms"
                  $0.listID = list.id
                  $0.templateID = template.id
                  $0.quietHours = .with {
                    $0.start = "10:00"
                    $0.end = "18:00"
                  }
                })
              #expect(created.quietHours.start == "10:00" && created.quietHours.end == "18:00")
              _ = try await campaign.sendCampaign(.with { $0.id = created.id })
              let relay = OutboxRelay(
                client: database, sink: DeliverySink(client: deliveryClient), links: .none, tracking: .none,
                logger: Logger(label: "test.relay"))
              try await relay.drain()
              let rows = try await database.query(
                "SELECT recipient, quiet_zones, quiet_start, quiet_end FROM delivery.messages ORDER BY recipient",
                logger: Logger(label: "test")
              ).decode((String, [String], Int16, Int16).self).elements()
              #expect(rows.map(\.0) == ["+14155550101", "+14155550102"])
              #expect(rows.map(\.1) == [["Asia/Tokyo"], ["America/Los_Angeles"]])
              #expect(rows.allSatisfy { $0.2 == 600 && $0.3 == 1080 })
              _ = store
            }
          }
        }
      }
    }
  }

  /// A journey's texts go to delivery with the person's zone (their time_zone attribute, else
  /// the number's), so the installation's quiet hours apply to them as to a campaign's (SPEC §12).
  @Test func aJourneysTextsCarryThePersonsZoneForQuietHours() async throws {
    try await withDelivery { _, _, deliveryPort, url in
      var definition = CampaignDefinition.definition(settings: CampaignSettings())
      definition.readinessDependencies = []
      definition.makeWorkers = { _ in [] }
      try await withRunningService(
        definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { client async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            try await withDatabase(url) { database async throws in
              let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: client)
              for (phone, attributes) in [("+14155550101", #"{"time_zone": "Asia/Tokyo"}"#), ("+14155550102", "{}")] {
                _ = try await campaign.createSubscriber(
                  .with {
                    $0.phone = phone
                    $0.attributesJson = attributes
                    $0.smsConsent = .with {
                      $0.subscribed = true
                      $0.source = "form"
                    }
                  })
              }
              let template = try await campaign.createTemplate(
                .with {
                  $0.name = "hi"
                  $0.channel = "sms"
                  $0.body = "Welcome! Reply STOP to opt out."
                })
              let journey = try await campaign.createJourney(
                .with {
                  $0.name = "texts"
                  $0.definition = .with {
                    $0.trigger = .with {
                      $0.kind = "event"
                      $0.event = "signed_up"
                    }
                    $0.steps = [
                      .with {
                        $0.id = "hi"
                        $0.kind = "send"
                        $0.templateID = template.id
                      }
                    ]
                  }
                })
              _ = try await campaign.publishJourney(.with { $0.journeyID = journey.id })
              _ = try await campaign.recordEvents(
                .with {
                  $0.events = ["+14155550101", "+14155550102"].map { phone in
                    .with {
                      $0.name = "signed_up"
                      $0.phone = phone
                      $0.idempotencyKey = "signup-\(phone)"
                    }
                  }
                })
              let logger = Logger(label: "test.journeys")
              try await JourneyTriggerProcessor(client: database, logger: logger).drain()
              try await JourneyScheduler(client: database, logger: logger).drain()
              try await JourneyRelay(client: database, sink: DeliverySink(client: deliveryClient), logger: logger).drain()
              let rows = try await database.query(
                "SELECT recipient, quiet_zones, quiet_start, quiet_end, idempotency_key FROM delivery.messages ORDER BY recipient",
                logger: logger
              ).decode((String, [String], Int16, Int16, String).self).elements()
              #expect(rows.map(\.0) == ["+14155550101", "+14155550102"])
              #expect(rows.map(\.1) == [["Asia/Tokyo"], ["America/Los_Angeles"]])
              #expect(rows.allSatisfy { $0.2 == 480 && $0.3 == 1260 && $0.4.hasPrefix("journey:") }, "\(rows)")
            }
          }
        }
      }
    }
  }
}
