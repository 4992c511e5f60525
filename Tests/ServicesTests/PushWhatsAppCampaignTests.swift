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
import ProviderSandbox
import SwiftProtobuf
import Testing

/// Push and WhatsApp campaigns end to end (issue 23): subscribers with push tokens and WhatsApp
/// numbers, push and WhatsApp templates, campaigns relayed to delivery and sent to the provider
/// sandbox (APNs, FCM and the WhatsApp Cloud API over HTTP/2 with TLS), the tokens the services
/// refuse retired through the event feed, WhatsApp's read receipts counted as opens, and STOP on
/// WhatsApp withdrawing the WhatsApp consent.
@Suite(.timeLimit(.minutes(6))) struct PushWhatsAppCampaignTests {
  typealias Campaign = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  typealias Delivery = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  struct Harness {
    var campaign: Campaign
    var delivery: Delivery
    var database: PostgresClient
    var sandbox: ProviderSandbox
    var sandboxPort: Int
    var certificate: String
    var relay: OutboxRelay
    var feed: DeliveryFeedConsumer
    var inbound: InboundFeedConsumer

    /// Relays the campaign, waits until delivery settled each message, and takes in the feed.
    func send(_ id: String, messages: Int) async throws {
      try await relay.drain()
      let campaign = try #require(UUID(uuidString: id))
      try await eventually(timeout: .seconds(60), "the campaign's \(messages) messages to be settled") {
        try await count(
          "SELECT count(*)::int FROM delivery.messages WHERE campaign_id = '\(campaign)' AND status <> 'queued' AND status <> 'sending'")
          == messages
      }
    }

    /// Takes in the delivery feed until `condition` holds.
    func feedUntil(_ what: String, _ condition: @escaping () async throws -> Bool) async throws {
      try await eventually(timeout: .seconds(60), what) {
        try await feed.pollOnce()
        return try await condition()
      }
    }

    func count(_ sql: String) async throws -> Int {
      try await database.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test")).decode(Int.self).elements().first ?? -1
    }

    func campaign(
      _ name: String, channel: String, template: String, list: String
    ) async throws -> Herald_Campaign_V1_Campaign {
      let created = try await campaign.createCampaign(
        .with {
          $0.name = name
          $0.channel = channel
          $0.listID = list
          $0.variants = [
            .with {
              $0.name = "A"
              $0.templateID = template
              $0.weight = 100
            }
          ]
        })
      return try await campaign.sendCampaign(.with { $0.id = created.id })
    }
  }

  func withHarness(_ body: (Harness) async throws -> Void) async throws {
    let keys = TestPushKeys.shared
    let appSecret = "wa-app-secret"
    try await withWhatsAppWebhookForwarding { hookPort, forward in
      let sandbox = ProviderSandbox(
        apns: .init(teamID: "HERALDTEAM", keyID: "HERALDKEY1", publicKeyPEM: keys.apnsPublicPEM, topic: "dev.herald.shop"),
        fcm: .init(projectID: "herald-test", clientEmail: keys.serviceAccountEmail, publicKeyPEM: keys.fcmPublicPEM),
        whatsapp: .init(
          phoneNumberID: "1055501000", accessToken: "wa-token", appSecret: appSecret,
          webhookURL: "http://127.0.0.1:\(hookPort)/v1/webhooks/whatsapp/whatsapp", templates: ["order_shipped": ("en_US", 2)]))
      try await withProviderSandbox(sandbox) { port, certificate in
        let base = "https://127.0.0.1:\(port)"
        var settings = DeliveryWorkerTests.settings()
        settings.providerKeys = [
          "HERALD_PROVIDER_APNS_KEY": keys.apnsPrivatePEM,
          "HERALD_PROVIDER_FCM_ACCOUNT": try keys.serviceAccountJSON(tokenURI: base + "/token"),
          "HERALD_PROVIDER_WA_TOKEN": "wa-token", "HERALD_PROVIDER_WA_SECRET": appSecret,
        ]
        let url = try await TestPostgres.shared.makeDatabase()
        var deliveryDefinition = DeliveryDefinition.make(settings: settings)
        deliveryDefinition.readinessDependencies = []
        try await withRunningService(deliveryDefinition, databaseURL: url) { deliveryPort, _ async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            let delivery = Delivery(wrapping: deliveryClient)
            forward.delivery = delivery
            for provider in Self.providers(base: base, certificate: certificate) { _ = try await delivery.putProvider(provider) }
            var campaignSettings = CampaignSettings()
            campaignSettings.publicURL = "https://mail.herald.test"
            campaignSettings.secrets = MailTests.secrets
            var definition = CampaignDefinition.definition(settings: campaignSettings)
            definition.readinessDependencies = []
            definition.makeWorkers = { _ in [] }
            try await withRunningService(
              definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
            ) { campaignPort, _ async throws in
              try await withClient(port: campaignPort) { campaignClient async throws in
                try await withDatabase(url) { database async throws in
                  let sink = DeliverySink(client: deliveryClient)
                  let logger = Logger(label: "test.push")
                  try await body(
                    Harness(
                      campaign: Campaign(wrapping: campaignClient), delivery: delivery, database: database, sandbox: sandbox,
                      sandboxPort: port, certificate: certificate,
                      relay: OutboxRelay(
                        client: database, sink: sink,
                        links: UnsubscribeLinks(publicURL: "https://mail.herald.test", secrets: MailTests.secrets), logger: logger),
                      feed: DeliveryFeedConsumer(client: database, source: sink, logger: logger),
                      inbound: InboundFeedConsumer(client: database, source: sink, logger: logger)))
                }
              }
            }
          }
        }
      }
    }
  }

  static func providers(base: String, certificate: String) -> [Herald_Delivery_V1_Provider] {
    [
      .with {
        $0.name = "apns"
        $0.channel = .push
        $0.costCents = 0
        $0.apns = .with {
          $0.url = base
          $0.teamID = "HERALDTEAM"
          $0.keyID = "HERALDKEY1"
          $0.privateKeyVariable = "HERALD_PROVIDER_APNS_KEY"
          $0.topic = "dev.herald.shop"
          $0.trustedCaPem = certificate
        }
      },
      .with {
        $0.name = "fcm"
        $0.channel = .push
        $0.fcm = .with {
          $0.projectID = "herald-test"
          $0.serviceAccountVariable = "HERALD_PROVIDER_FCM_ACCOUNT"
          $0.url = base
          $0.trustedCaPem = certificate
        }
      },
      .with {
        $0.name = "whatsapp"
        $0.channel = .whatsapp
        $0.costCents = 1
        $0.whatsapp = .with {
          $0.url = base + "/v21.0"
          $0.phoneNumberID = "1055501000"
          $0.phoneNumber = "+15550100000"
          $0.accessTokenVariable = "HERALD_PROVIDER_WA_TOKEN"
          $0.appSecretVariable = "HERALD_PROVIDER_WA_SECRET"
          $0.trustedCaPem = certificate
        }
      },
    ]
  }

  static let ada = "+4915112345678"
  static let cy = "+4915199999999"

  @Test func pushAndWhatsAppCampaignsReachTheProvidersOncePerRecipient() async throws {
    try await withHarness { h in
      let campaign = h.campaign
      func person(_ name: String, email: String, whatsapp: String?, consent: Bool) async throws -> Herald_Campaign_V1_Subscriber {
        try await campaign.createSubscriber(
          .with {
            $0.email = email
            $0.firstName = name
            if let whatsapp {
              $0.whatsapp = whatsapp
              if consent {
                $0.whatsappConsent = .with {
                  $0.subscribed = true
                  $0.source = "checkout-opt-in"
                }
              }
            }
          })
      }
      let ada = try await person("Ada", email: "ada@example.com", whatsapp: Self.ada, consent: true)
      let bob = try await person("Bob", email: "bob@example.com", whatsapp: "+4915187654321", consent: false)
      let cy = try await person("Cy", email: "cy@example.com", whatsapp: Self.cy, consent: true)
      #expect(ada.whatsapp == Self.ada && ada.whatsappConsent.subscribed && ada.whatsappConsent.source == "checkout-opt-in")

      // Devices: Ada has an old iPhone and a new one; Bob an Android; Cy an iPhone whose app was
      // uninstalled since (the sandbox answers 410 for it).
      func register(_ subscriber: String, _ platform: String, _ token: String) async throws -> Herald_Campaign_V1_PushToken {
        try await campaign.registerPushToken(
          .with {
            $0.subscriberID = subscriber
            $0.platform = platform
            $0.token = token
            $0.appID = "dev.herald.shop"
          })
      }
      let adaOld = String(repeating: "a1", count: 32)
      let adaNew = String(repeating: "a2", count: 32)
      let bobToken = "bob-android:APA91bHeraldBob"
      let cyToken = String(repeating: "c3", count: 32)
      _ = try await register(ada.id, "apns", adaOld)
      _ = try await register(ada.id, "apns", adaNew)
      _ = try await register(bob.id, "fcm", bobToken)
      _ = try await register(cy.id, "apns", cyToken)
      h.sandbox.unregister(cyToken)
      // A bad token is refused naming the field.
      await #expect(throws: RPCError.self) { _ = try await register(bob.id, "fcm", "short") }
      let tokens = try await campaign.getSubscriber(.with { $0.id = ada.id }).pushTokens
      #expect(tokens.map(\.token) == [adaNew, adaOld])

      let list = try await campaign.createList(.with { $0.name = "customers" })
      _ = try await campaign.addListMembers(
        .with {
          $0.listID = list.id
          $0.subscriberIds = [ada.id, bob.id, cy.id]
        })

      // A push template: title, text, data and deep link with the person's values.
      let push = try await campaign.createTemplate(
        .with {
          $0.name = "shipped push"
          $0.channel = "push"
          $0.subject = "Hi {{first_name}}"
          $0.body = "Order {{order}} is on its way"
          $0.variables = [
            .with { $0.name = "first_name" },
            .with {
              $0.name = "order"
              $0.defaultValue = "42"
            },
          ]
          $0.push = .with {
            $0.dataJson = #"{"order": "{{order}}", "screen": "orders"}"#
            $0.deepLink = "shop://orders/{{order}}"
          }
        })
      #expect(push.push.deepLink == "shop://orders/{{order}}")
      let first = try await h.campaign("Shipped (push)", channel: "push", template: push.id, list: list.id)
      #expect(first.counts.outbox == 3)
      try await h.send(first.id, messages: 3)

      // Each person's most recently seen token, exactly once; Cy's was refused.
      let received = h.sandbox.received
      #expect(received.filter { $0.service == "apns" }.map(\.recipient) == [adaNew])
      #expect(received.filter { $0.service == "fcm" }.map(\.recipient) == [bobToken])
      let apns = try #require(received.first { $0.service == "apns" })
      #expect((apns.json["aps"] as? [String: Any]).flatMap { $0["alert"] as? [String: Any] }?["title"] as? String == "Hi Ada")
      #expect(apns.json["deep_link"] as? String == "shop://orders/42" && apns.json["screen"] as? String == "orders")
      #expect(h.sandbox.refusals.filter { $0.contains(cyToken) }.count == 1)

      // The bounce reaches the campaign service, which retires Cy's token.
      try await h.feedUntil("Cy's token to be retired") {
        try await campaign.getSubscriber(.with { $0.id = cy.id }).pushTokens.first?.retiredReason == "unregistered"
      }
      let analytics = try await campaign.getCampaignAnalytics(.with { $0.campaignID = first.id })
      #expect(analytics.totals.sent == 2 && analytics.totals.bounced == 1)

      // The next push campaign leaves Cy out (no live token) and never uses the retired one.
      let second = try await h.campaign("Shipped again (push)", channel: "push", template: push.id, list: list.id)
      #expect(second.counts.outbox == 2 && second.counts.skippedNoConsent == 1)
      try await h.send(second.id, messages: 2)
      #expect(h.sandbox.received.filter { $0.recipient == cyToken }.isEmpty)
      #expect(h.sandbox.refusals.filter { $0.contains(cyToken) }.count == 1)

      // WhatsApp: an approved template whose body uses {{2}} without a second parameter is
      // refused at save, naming it.
      do {
        _ = try await campaign.createTemplate(
          .with {
            $0.name = "shipped wa (short)"
            $0.channel = "whatsapp"
            $0.body = "Hi {{1}}, your order {{2}} has shipped."
            $0.variables = [.with { $0.name = "first_name" }]
            $0.whatsapp = .with {
              $0.templateName = "order_shipped"
              $0.language = "en_US"
              $0.parameters = ["{{first_name}}"]
            }
          })
        Issue.record("a WhatsApp template without its second parameter was saved")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("whatsapp.parameters[1] is missing: the approved body uses {{2}}"))
      }
      let whatsapp = try await campaign.createTemplate(
        .with {
          $0.name = "shipped wa"
          $0.channel = "whatsapp"
          $0.body = "Hi {{1}}, your order {{2}} has shipped."
          $0.variables = [
            .with { $0.name = "first_name" },
            .with {
              $0.name = "order"
              $0.defaultValue = "42"
            },
          ]
          $0.whatsapp = .with {
            $0.templateName = "order_shipped"
            $0.language = "en_US"
            $0.parameters = ["{{first_name}}", "{{order}}"]
          }
        })
      let wa = try await h.campaign("Shipped (WhatsApp)", channel: "whatsapp", template: whatsapp.id, list: list.id)
      // Bob never opted in to WhatsApp.
      #expect(wa.counts.outbox == 2 && wa.counts.skippedNoConsent == 1)
      try await h.send(wa.id, messages: 2)
      let sentWA = h.sandbox.received.filter { $0.service == "whatsapp" }
      #expect(sentWA.map(\.recipient).sorted() == ["4915112345678", "4915199999999"])
      let parameters = (sentWA.first { $0.recipient == "4915112345678" }?.json["template"] as? [String: Any])
        .flatMap { ($0["components"] as? [[String: Any]])?.first?["parameters"] as? [[String: Any]] }?.compactMap { $0["text"] as? String }
      #expect(parameters == ["Ada", "42"])
      let record = try await h.database.query(
        "SELECT body FROM delivery.messages WHERE recipient = \(Self.ada) AND channel = 'whatsapp'", logger: Logger(label: "test")
      ).decode(String.self).elements().first
      #expect(record == "Hi Ada, your order 42 has shipped.")
      // The read receipts come back signed through the webhook: WhatsApp's read is an open.
      try await h.feedUntil("both reads to count as opens") {
        try await campaign.getCampaignAnalytics(.with { $0.campaignID = wa.id }).totals.opened == 2
      }

      // Free text outside the 24-hour window: refused at send, saying why.
      let text = try await campaign.createTemplate(
        .with {
          $0.name = "free text"
          $0.channel = "whatsapp"
          $0.body = "Hi {{first_name}}, anything else?"
          $0.variables = [.with { $0.name = "first_name" }]
        })
      let free = try await h.campaign("Follow-up (WhatsApp text)", channel: "whatsapp", template: text.id, list: list.id)
      try await h.send(free.id, messages: 2)
      let failed = try await h.delivery.listMessages(
        .with {
          $0.campaignID = free.id
          $0.status = "failed"
        }
      ).messages
      #expect(failed.count == 2)
      #expect(failed.allSatisfy { $0.lastError.contains("outside WhatsApp's 24-hour customer-service window") })

      // Cy writes STOP on WhatsApp: only the WhatsApp consent goes.
      let answer = try await ProviderSandboxClient.post(
        url: "https://127.0.0.1:\(h.sandboxPort)/sandbox/whatsapp/inbound", certificate: h.certificate, ["from": Self.cy, "text": "STOP"])
      #expect(answer["webhook_status"] as? Int == 200)
      try await eventually(timeout: .seconds(60), "the STOP to withdraw Cy's WhatsApp consent") {
        try await h.inbound.pollOnce()
        return try await campaign.getSubscriber(.with { $0.id = cy.id }).whatsappConsent.subscribed == false
      }
      let history = try await campaign.exportSubscriber(.with { $0.id = cy.id })
      #expect(history.consentHistory.contains { $0.channel == "whatsapp" && !$0.subscribed && $0.source == "whatsapp-keyword:STOP" })
      #expect(history.subscriber.pushTokens.count == 1)

      // Erasure removes the WhatsApp number and the tokens.
      let erased = try await campaign.eraseSubscriber(.with { $0.id = ada.id })
      #expect(erased.whatsapp.isEmpty && !erased.whatsappConsent.subscribed)
      #expect(try await h.count("SELECT count(*)::int FROM campaign.push_tokens WHERE subscriber_id = '\(ada.id)'") == 0)

      // Unsubscribing Bob from push retires his token.
      let bobAfter = try await campaign.unsubscribe(
        .with {
          $0.id = bob.id
          $0.channel = .push
        })
      #expect(bobAfter.pushTokens.allSatisfy { $0.retiredReason == "unsubscribed" })
      #expect(bobAfter.hasPushUnsubscribedAt)
      // The app registers its token again at its next start: it stays retired, and no push
      // campaign reaches Bob, until he turns notifications back on in the app.
      let again = try await register(bob.id, "fcm", bobToken)
      #expect(again.retiredReason == "unsubscribed")
      let third = try await h.campaign("Shipped thrice (push)", channel: "push", template: push.id, list: list.id)
      #expect(third.counts.outbox == 0)
      let back = try await campaign.registerPushToken(
        .with {
          $0.subscriberID = bob.id
          $0.platform = "fcm"
          $0.token = bobToken
          $0.resubscribeSource = "app-settings"
        })
      #expect(back.retiredReason.isEmpty && !back.hasRetiredAt)
      let bobNow = try await campaign.exportSubscriber(.with { $0.id = bob.id })
      #expect(!bobNow.subscriber.hasPushUnsubscribedAt)
      #expect(bobNow.consentHistory.filter { $0.channel == "push" }.map(\.subscribed) == [false, true])
    }
  }

  @Test func contactRulesOfTheNewChannels() async throws {
    try await withHarness { h in
      let campaign = h.campaign
      // Push and WhatsApp messages carry no unsubscribe link.
      await #expect {
        _ = try await campaign.createTemplate(
          .with {
            $0.name = "push with a link"
            $0.channel = "push"
            $0.body = "Bye: {{unsubscribe_url}}"
            $0.variables = [.with { $0.name = "unsubscribe_url" }]
          })
      } throws: { error in
        (error as? RPCError)?.message.contains("push messages carry no unsubscribe link") == true
      }
      // An approved template's body is its approved text: variables go into the parameters.
      await #expect {
        _ = try await campaign.createTemplate(
          .with {
            $0.name = "wa with a variable"
            $0.channel = "whatsapp"
            $0.body = "Hi {{first_name}}"
            $0.variables = [.with { $0.name = "first_name" }]
            $0.whatsapp = .with {
              $0.templateName = "welcome"
              $0.language = "en_US"
            }
          })
      } throws: { error in
        (error as? RPCError)?.message.contains("put variables such as {{first_name}} in whatsapp.parameters") == true
      }
      // A WhatsApp number is one subscriber's; consent needs the number.
      _ = try await campaign.createSubscriber(
        .with {
          $0.email = "dora@example.com"
          $0.whatsapp = Self.ada
        })
      await #expect {
        _ = try await campaign.createSubscriber(
          .with {
            $0.email = "eve@example.com"
            $0.whatsapp = Self.ada
          })
      } throws: { error in
        (error as? RPCError)?.code == .alreadyExists && (error as? RPCError)?.message.contains("whatsapp") == true
      }
      await #expect {
        _ = try await campaign.createSubscriber(
          .with {
            $0.email = "fay@example.com"
            $0.whatsappConsent = .with {
              $0.subscribed = true
              $0.source = "form"
            }
          })
      } throws: { error in
        (error as? RPCError)?.message == "whatsapp_consent is given but the subscriber has no whatsapp"
      }
      // An import row giving a number another subscriber has fails naming whatsapp; the others go in.
      let rows: [Herald_Campaign_V1_ImportRow] = [
        .with {
          $0.row = 2
          $0.subscriber = .with {
            $0.email = "gus@example.com"
            $0.whatsapp = Self.ada
          }
        },
        .with {
          $0.row = 3
          $0.subscriber = .with {
            $0.email = "hal@example.com"
            $0.whatsapp = Self.cy
            $0.whatsappConsent = .with { $0.subscribed = true }
            // Tokens exported from another platform come along.
            $0.pushTokens = [
              .with {
                $0.platform = "fcm"
                $0.token = "hal-phone:APA91bImported"
                $0.appID = "dev.herald.shop"
              }
            ]
          }
        },
        // Dora has a number already: a row cannot change it (its consent would go to the old one).
        .with {
          $0.row = 4
          $0.subscriber = .with {
            $0.email = "dora@example.com"
            $0.whatsapp = "+4915100000077"
            $0.whatsappConsent = .with { $0.subscribed = true }
          }
        },
      ]
      let report = try await SubscriberImportTests().send(campaign, options: .with { $0.consentSource = "import" }, chunks: [rows])
      #expect(report.created == 1 && report.failed == 2)
      #expect(report.errors.map(\.field) == ["whatsapp", "whatsapp"] && report.errors.map(\.row) == [2, 4])
      #expect(report.errors.last?.message == "the subscriber has another whatsapp number")
      let hal = try #require(try await campaign.lookupSubscribers(.with { $0.emails = ["hal@example.com"] }).subscribers.first)
      #expect(hal.whatsapp == Self.cy && hal.whatsappConsent.source == "import")
      let halTokens = try await campaign.getSubscriber(.with { $0.id = hal.id }).pushTokens
      #expect(halTokens.map(\.token) == ["hal-phone:APA91bImported"] && halTokens.first?.retiredReason.isEmpty == true)
      // A subscriber made with its devices; a bad token is refused naming it.
      let ivy = try await campaign.createSubscriber(
        .with {
          $0.email = "ivy@example.com"
          $0.pushTokens = [
            .with {
              $0.platform = "apns"
              $0.token = String(repeating: "d4", count: 32)
            }
          ]
        })
      #expect(try await campaign.getSubscriber(.with { $0.id = ivy.id }).pushTokens.map(\.platform) == ["apns"])
      await #expect {
        _ = try await campaign.createSubscriber(
          .with {
            $0.email = "joe@example.com"
            $0.pushTokens = [
              .with {
                $0.platform = "apns"
                $0.token = "tiny"
              }
            ]
          })
      } throws: { error in
        (error as? RPCError)?.message.hasPrefix("push_tokens[0].token must be the device token") == true
      }
    }
  }
}
