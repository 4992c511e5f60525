import Crypto
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
import ProviderSandbox
import SwiftProtobuf
import Testing

/// Push (APNs, FCM) and WhatsApp (Cloud API) delivery against the provider sandbox: a local
/// HTTP/2 server over TLS that checks the JWTs with the keys' public halves, answers as the
/// services do (410 Unregistered, UNREGISTERED, template errors) and posts WhatsApp's signed
/// webhooks.
@Suite(.timeLimit(.minutes(5))) struct PushWhatsAppDeliveryTests {
  typealias Delivery = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  static let teamID = "HERALDTEAM"
  static let keyID = "HERALDKEY1"
  static let topic = "dev.herald.shop"

  func withDelivery(keys: [String: String], _ body: (Delivery, PostgresClient) async throws -> Void) async throws {
    var settings = DeliveryWorkerTests.settings()
    settings.providerKeys = keys
    try await DeliveryWorkerTests().withDelivery(settings, body)
  }

  static func push(_ key: String, token: String, platform: String, title: String = "Your order shipped")
    -> Herald_Delivery_V1_OutboundMessage
  {
    .with {
      $0.idempotencyKey = key
      $0.channel = .push
      $0.recipient = token
      $0.subject = title
      $0.body = "Parcel \(key) is on its way"
      $0.push = .with {
        $0.platform = platform
        $0.dataJson = #"{"order": "42", "items": 3}"#
        $0.deepLink = "shop://orders/42"
        $0.collapseID = "order-42"
      }
    }
  }

  func statuses(_ database: PostgresClient) async throws -> [String: Int] {
    try await DeliveryWorkerTests().statuses(database)
  }

  func message(_ delivery: Delivery, key: String, database: PostgresClient) async throws -> Herald_Delivery_V1_Message {
    let rows = try await database.query(
      "SELECT id FROM delivery.messages WHERE idempotency_key = \(key)", logger: Logger(label: "test")
    ).decode(UUID.self).elements()
    let id = try #require(rows.first)
    return try await delivery.getMessage(.with { $0.id = id.uuidString.lowercased() }).message
  }

  @Test func apnsAndFCMSendWithTheirTokensAndUnregisteredDevicesBounce() async throws {
    let keys = TestPushKeys.shared
    let sandbox = ProviderSandbox(
      apns: .init(teamID: Self.teamID, keyID: Self.keyID, publicKeyPEM: keys.apnsPublicPEM, topic: Self.topic),
      fcm: .init(projectID: "herald-test", clientEmail: keys.serviceAccountEmail, publicKeyPEM: keys.fcmPublicPEM))
    let apnsGone = String(repeating: "ab", count: 32)
    let fcmGone = "fcm-token-uninstalled:APA91bGone"
    sandbox.unregister(apnsGone)
    sandbox.unregister(fcmGone)
    try await withProviderSandbox(sandbox) { port, certificate in
      let base = "https://127.0.0.1:\(port)"
      let environment = [
        "HERALD_PROVIDER_APNS_KEY": keys.apnsPrivatePEM,
        "HERALD_PROVIDER_FCM_ACCOUNT": try keys.serviceAccountJSON(tokenURI: base + "/token"),
      ]
      try await withDelivery(keys: environment) { delivery, database in
        _ = try await delivery.putProvider(
          .with {
            $0.name = "apns"
            $0.channel = .push
            $0.costCents = 0
            $0.apns = .with {
              $0.url = base
              $0.teamID = Self.teamID
              $0.keyID = Self.keyID
              $0.privateKeyVariable = "HERALD_PROVIDER_APNS_KEY"
              $0.topic = Self.topic
              $0.trustedCaPem = certificate
            }
          })
        _ = try await delivery.putProvider(
          .with {
            $0.name = "fcm"
            $0.channel = .push
            $0.fcm = .with {
              $0.projectID = "herald-test"
              $0.serviceAccountVariable = "HERALD_PROVIDER_FCM_ACCOUNT"
              $0.url = base
              $0.trustedCaPem = certificate
            }
          })
        let iPhones = (1...3).map { String(format: "%064x", $0) }
        let androids = (1...3).map { "fcm-token-\($0):APA91bHerald\($0)" }
        var messages = iPhones.enumerated().map { Self.push("ios-\($0.offset)", token: $0.element, platform: "apns") }
        messages += androids.enumerated().map { Self.push("android-\($0.offset)", token: $0.element, platform: "fcm") }
        messages.append(Self.push("ios-gone", token: apnsGone, platform: "apns"))
        messages.append(Self.push("android-gone", token: fcmGone, platform: "fcm"))
        // A token APNs calls bad (of the other environment, most often): failed, not retired.
        messages.append(Self.push("ios-bad", token: "badtoken-of-the-sandbox-environment", platform: "apns"))
        _ = try await delivery.enqueueMessages(.with { $0.messages = messages })
        try await eventually("the notifications to be settled") {
          let counts = try await statuses(database)
          return counts["sent"] == 6 && counts["bounced"] == 2 && counts["failed"] == 1
        }
        let bad = try await message(delivery, key: "ios-bad", database: database)
        #expect(bad.lastError.contains("BadDeviceToken") && bad.lastError.contains("production or sandbox"))

        // Each platform's notifications went to its own service, once each.
        let received = sandbox.received
        #expect(received.filter { $0.service == "apns" }.map(\.recipient).sorted() == iPhones.sorted())
        #expect(received.filter { $0.service == "fcm" }.map(\.recipient).sorted() == androids.sorted())
        let apns = try #require(received.first { $0.service == "apns" })
        #expect(apns.headers["apns-topic"] == Self.topic)
        #expect(apns.headers["apns-push-type"] == "alert")
        #expect(apns.headers["apns-priority"] == "10")
        #expect(apns.headers["apns-collapse-id"] == "order-42")
        let expiration = try #require(apns.headers["apns-expiration"].flatMap(Int.init))
        #expect(abs(Double(expiration) - Date().addingTimeInterval(2_419_200).timeIntervalSince1970) < 120)
        let aps = try #require(apns.json["aps"] as? [String: Any])
        let alert = try #require(aps["alert"] as? [String: Any])
        #expect(alert["title"] as? String == "Your order shipped")
        #expect((alert["body"] as? String)?.hasPrefix("Parcel ios-") == true)
        #expect(apns.json["order"] as? String == "42" && apns.json["items"] as? Int == 3)
        #expect(apns.json["deep_link"] as? String == "shop://orders/42")
        // One provider JWT for all of them (made once, cached).
        #expect(Set(received.filter { $0.service == "apns" }.compactMap { $0.headers["authorization"] }).count == 1)

        let fcm = try #require(received.first { $0.service == "fcm" })
        let sentToFCM = try #require(fcm.json["message"] as? [String: Any])
        #expect((sentToFCM["notification"] as? [String: Any])?["title"] as? String == "Your order shipped")
        // FCM's data takes strings only: the number goes as its JSON text.
        #expect(sentToFCM["data"] as? [String: String] == ["order": "42", "items": "3", "deep_link": "shop://orders/42"])
        #expect((sentToFCM["android"] as? [String: Any])?["collapse_key"] as? String == "order-42")
        // One access token for every send (the grant is cached).
        #expect(sandbox.tokenGrants == 1)

        // The uninstalled devices' notifications bounced, saying why, and the bounce is in the
        // feed the campaign service reads (which retires the token).
        let gone = try await message(delivery, key: "ios-gone", database: database)
        #expect(gone.status == "bounced")
        #expect(gone.lastError.contains("410") && gone.lastError.contains("Unregistered"))
        let fcmBounce = try await message(delivery, key: "android-gone", database: database)
        #expect(fcmBounce.status == "bounced" && fcmBounce.lastError.contains("UNREGISTERED"))
        // (The feed serves an event once no older transaction of the cluster is running.)
        try await eventually("the bounce to be in the feed") {
          try await delivery.listDeliveryEvents(.init()).events.contains { $0.messageID == gone.id && $0.status == "bounced" }
        }
        let sent = try await message(delivery, key: "ios-0", database: database)
        #expect(sent.provider == "apns" && !sent.providerMessageID.isEmpty)
      }
    }
  }

  @Test func aJWTSignedWithAnotherKeyIsRefusedAndTheNotificationWaits() async throws {
    let keys = TestPushKeys.shared
    let other = try TestPushKeys()
    // The sandbox knows the account's real public key; Herald holds another private key.
    let sandbox = ProviderSandbox(
      apns: .init(teamID: Self.teamID, keyID: Self.keyID, publicKeyPEM: keys.apnsPublicPEM, topic: Self.topic))
    try await withProviderSandbox(sandbox) { port, certificate in
      try await withDelivery(keys: ["HERALD_PROVIDER_APNS_KEY": other.apnsPrivatePEM]) { delivery, database in
        _ = try await delivery.putProvider(
          .with {
            $0.name = "apns"
            $0.channel = .push
            $0.apns = .with {
              $0.url = "https://127.0.0.1:\(port)"
              $0.teamID = Self.teamID
              $0.keyID = Self.keyID
              $0.privateKeyVariable = "HERALD_PROVIDER_APNS_KEY"
              $0.topic = Self.topic
              $0.trustedCaPem = certificate
            }
          })
        _ = try await delivery.enqueueMessages(
          .with { $0.messages = [Self.push("p1", token: String(repeating: "cd", count: 32), platform: "apns")] })
        try await eventually("the refusal") { sandbox.refusals.contains { $0.contains("the signature does not verify") } }
        try await eventually("the retry to be recorded") {
          let message = try await message(delivery, key: "p1", database: database)
          return message.lastError.contains("InvalidProviderToken")
        }
        #expect(sandbox.received.isEmpty)
        #expect(try await statuses(database)["sent"] == nil)
      }
    }
  }

  @Test func whatsAppTemplatesTextsWebhooksAndTheCustomerServiceWindow() async throws {
    let appSecret = "wa-app-secret"
    let ada = "+4915112345678"
    let bob = "+4915187654321"
    // The webhooks the sandbox posts reach delivery as the gateway's route passes them on.
    try await withWhatsAppWebhookForwarding { hookPort, forward in
      let sandbox = ProviderSandbox(
        whatsapp: .init(
          phoneNumberID: "1055501000", accessToken: "wa-token", appSecret: appSecret,
          webhookURL: "http://127.0.0.1:\(hookPort)/v1/webhooks/whatsapp/whatsapp",
          templates: ["order_shipped": ("en_US", 2)]))
      try await withProviderSandbox(sandbox) { port, certificate in
        let environment = [
          "HERALD_PROVIDER_WA_TOKEN": "wa-token", "HERALD_PROVIDER_WA_SECRET": appSecret, "HERALD_PROVIDER_WA_VERIFY": "verify-me",
        ]
        try await withDelivery(keys: environment) { delivery, database in
          forward.delivery = delivery
          _ = try await delivery.putProvider(
            .with {
              $0.name = "whatsapp"
              $0.channel = .whatsapp
              $0.costCents = 1
              $0.whatsapp = .with {
                $0.url = "https://127.0.0.1:\(port)/v21.0"
                $0.phoneNumberID = "1055501000"
                $0.phoneNumber = "+15550100000"
                $0.accessTokenVariable = "HERALD_PROVIDER_WA_TOKEN"
                $0.appSecretVariable = "HERALD_PROVIDER_WA_SECRET"
                $0.verifyTokenVariable = "HERALD_PROVIDER_WA_VERIFY"
                $0.trustedCaPem = certificate
              }
            })
          func template(_ key: String, to number: String, parameters: [String]) -> Herald_Delivery_V1_OutboundMessage {
            .with {
              $0.idempotencyKey = key
              $0.channel = .whatsapp
              $0.recipient = number
              $0.body = "Hi \(parameters.first ?? ""), order \(parameters.last ?? "") shipped"
              $0.whatsappTemplate = .with {
                $0.name = "order_shipped"
                $0.language = "en_US"
                $0.parameters = parameters
              }
            }
          }
          func text(_ key: String, to number: String, _ body: String) -> Herald_Delivery_V1_OutboundMessage {
            .with {
              $0.idempotencyKey = key
              $0.channel = .whatsapp
              $0.recipient = number
              $0.body = body
            }
          }

          // A template goes out in the Cloud API's shape; its statuses come back signed, and the
          // read receipt is an open.
          _ = try await delivery.sendMessage(template("t1", to: ada, parameters: ["Ada", "42"]))
          try await eventually("the template to be delivered and read") {
            let events = try await delivery.listDeliveryEvents(.init()).events.map(\.status)
            return events.contains("delivered") && events.contains("opened")
          }
          let sent = try #require(sandbox.received.first)
          #expect(sent.recipient == "4915112345678")
          #expect(sent.headers["authorization"] == "Bearer wa-token")
          let body = sent.json
          #expect(body["type"] as? String == "template")
          let components = try #require((body["template"] as? [String: Any])?["components"] as? [[String: Any]])
          #expect((components.first?["parameters"] as? [[String: Any]])?.compactMap { $0["text"] as? String } == ["Ada", "42"])
          let t1 = try await message(delivery, key: "t1", database: database)
          #expect(t1.status == "delivered" && t1.providerMessageID.hasPrefix("wamid."))

          // A template the account does not have as given (one parameter short) fails with the
          // service's reason.
          _ = try await delivery.sendMessage(template("t2", to: ada, parameters: ["Ada"]))
          try await eventually("the short template to fail") {
            try await message(delivery, key: "t2", database: database).status == "failed"
          }
          #expect(try await message(delivery, key: "t2", database: database).lastError.contains("132000"))

          // Free text to a number that has not written in the last 24 hours fails at send, saying why.
          _ = try await delivery.sendMessage(text("x1", to: bob, "Where are you?"))
          try await eventually("the text to fail") { try await message(delivery, key: "x1", database: database).status == "failed" }
          let refused = try await message(delivery, key: "x1", database: database)
          #expect(refused.lastError.contains("24-hour customer-service window") && refused.lastError.contains("never wrote"))
          #expect(!sandbox.received.contains { $0.recipient == "4915187654321" })

          // Bob writes: an inbound message of channel whatsapp, and now free text may answer him.
          let hello = try await Self.inbound(port: port, certificate: certificate, from: bob, text: "Hello, is my parcel coming?")
          #expect(hello == 200)
          let inbound = try await delivery.listInboundMessages(.init()).messages
          #expect(inbound.first?.channel == "whatsapp" && inbound.first?.from == bob && inbound.first?.to == "+15550100000")
          _ = try await delivery.sendMessage(text("x2", to: bob, "Yes, tomorrow."))
          try await eventually("the answer to be sent") { try await message(delivery, key: "x2", database: database).status != "queued" }
          #expect(try await message(delivery, key: "x2", database: database).status != "failed")

          // STOP on WhatsApp: the WhatsApp number is suppressed (not the number's texts), and the
          // confirmation goes back on WhatsApp.
          #expect(try await Self.inbound(port: port, certificate: certificate, from: bob, text: "STOP") == 200)
          let stop = try #require(try await delivery.listInboundMessages(.with { $0.action = "stop" }).messages.first)
          #expect(stop.channel == "whatsapp" && !stop.responseMessageID.isEmpty)
          let suppressed = try await delivery.listSuppressions(.init()).suppressions.map(\.address)
          #expect(suppressed.contains("whatsapp:\(bob)") && !suppressed.contains(bob))
          try await eventually("the confirmation to go out on WhatsApp") {
            sandbox.received.filter { $0.recipient == "4915187654321" }.count == 2
          }
          let later = try await delivery.sendMessage(template("t3", to: bob, parameters: ["Bob", "43"]))
          #expect(later.suppressed)
          let sms = try await delivery.sendMessage(DeliveryWorkerTests.sms("s1", to: bob))
          #expect(!sms.suppressed)

          // A status that comes before its send is recorded (a recent one naming no message) is
          // answered UNAVAILABLE and nothing of the webhook is applied, so that WhatsApp sends it
          // again; an old one naming no message of Herald's is ignored.
          func signed(_ object: [String: Any]) throws -> (Data, String) {
            let body = try JSONSerialization.data(withJSONObject: object)
            let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(appSecret.utf8)))
            return (body, "sha256=" + mac.map { String(format: "%02x", $0) }.joined())
          }
          func statusWebhook(_ id: String, at time: Date) throws -> (Data, String) {
            try signed([
              "object": "whatsapp_business_account",
              "entry": [
                [
                  "id": "waba",
                  "changes": [
                    [
                      "field": "messages",
                      "value": [
                        "statuses": [["id": id, "status": "delivered", "timestamp": String(Int(time.timeIntervalSince1970))]],
                        "messages": [
                          [
                            "from": "4915100000099", "id": "wamid.in-\(id)", "type": "text",
                            "timestamp": String(Int(time.timeIntervalSince1970)), "text": ["body": "hi"],
                          ]
                        ],
                      ],
                    ]
                  ],
                ]
              ],
            ])
          }
          let (early, earlySignature) = try statusWebhook("wamid.not-yet", at: Date())
          await #expect {
            _ = try await delivery.ingestWhatsAppWebhook(
              .with {
                $0.provider = "whatsapp"
                $0.body = early
                $0.signature = earlySignature
              })
          } throws: { ($0 as? RPCError)?.code == .unavailable }
          #expect(try await delivery.listInboundMessages(.init()).messages.allSatisfy { $0.from != "+4915100000099" })
          let (late, lateSignature) = try statusWebhook("wamid.someone-else", at: Date().addingTimeInterval(-3600))
          let answer = try await delivery.ingestWhatsAppWebhook(
            .with {
              $0.provider = "whatsapp"
              $0.body = late
              $0.signature = lateSignature
            })
          #expect(answer.applied == 0 && answer.ignored == 1 && answer.inbound.count == 1)

          // A webhook signed with another secret is refused, and nothing of it applied.
          await #expect(throws: RPCError.self) {
            _ = try await delivery.ingestWhatsAppWebhook(
              .with {
                $0.provider = "whatsapp"
                $0.body = Data(#"{"entry": []}"#.utf8)
                $0.signature = "sha256=" + String(repeating: "0", count: 64)
              })
          }
          // The subscription handshake answers the challenge for the right token only.
          let challenge = try await delivery.verifyWhatsAppWebhook(
            .with {
              $0.provider = "whatsapp"
              $0.mode = "subscribe"
              $0.verifyToken = "verify-me"
              $0.challenge = "1158201444"
            })
          #expect(challenge.challenge == "1158201444")
          await #expect(throws: RPCError.self) {
            _ = try await delivery.verifyWhatsAppWebhook(
              .with {
                $0.provider = "whatsapp"
                $0.mode = "subscribe"
                $0.verifyToken = "guess"
                $0.challenge = "1"
              })
          }
        }
      }
    }
  }

  /// A person writes to the sandbox's number; the status its webhook post got.
  static func inbound(port: Int, certificate: String, from: String, text: String) async throws -> Int {
    let answer = try await sandboxPost(
      port: port, certificate: certificate, path: "/sandbox/whatsapp/inbound", ["from": from, "text": text])
    return answer["webhook_status"] as? Int ?? 0
  }

  @Test func badPushAndWhatsAppInputIsRefusedNamingTheField() async throws {
    try await withDelivery(keys: ["HERALD_PROVIDER_APNS_KEY": "x", "HERALD_PROVIDER_WA_SECRET": "s", "HERALD_PROVIDER_WA_TOKEN": "t"]) {
      delivery, _ in
      func refused(_ message: Herald_Delivery_V1_OutboundMessage) async -> String {
        do {
          _ = try await delivery.sendMessage(message)
          return "accepted"
        } catch let error as RPCError {
          return error.message
        } catch {
          return "\(error)"
        }
      }
      var noPlatform = Self.push("a", token: String(repeating: "ab", count: 32), platform: "apns")
      noPlatform.clearPush()
      #expect(await refused(noPlatform).contains("push is required"))
      var badData = Self.push("b", token: String(repeating: "ab", count: 32), platform: "fcm")
      badData.push.dataJson = "[1, 2]"
      #expect(await refused(badData).contains("push.data_json must be a JSON object"))
      var reserved = Self.push("c", token: String(repeating: "ab", count: 32), platform: "apns")
      reserved.push.dataJson = #"{"aps": {}}"#
      #expect(await refused(reserved).contains("'aps'"))
      #expect(await refused(Self.push("d", token: "short", platform: "apns")).contains("recipient must be a device token"))
      #expect(await refused(Self.push("e", token: String(repeating: "ab", count: 32), platform: "webpush")).contains("push.platform"))
      let wrongNumber = Herald_Delivery_V1_OutboundMessage.with {
        $0.idempotencyKey = "f"
        $0.channel = .whatsapp
        $0.recipient = "ada@example.com"
        $0.body = "Hi"
      }
      #expect(await refused(wrongNumber).contains("recipient must be an E.164 number"))
      let templateOnSMS = Herald_Delivery_V1_OutboundMessage.with {
        $0.idempotencyKey = "g"
        $0.channel = .sms
        $0.recipient = "+4915112345678"
        $0.body = "Hi"
        $0.whatsappTemplate = .with {
          $0.name = "order_shipped"
          $0.language = "en_US"
        }
      }
      #expect(await refused(templateOnSMS).contains("whatsapp_template applies to CHANNEL_WHATSAPP only"))

      func providerRefusal(_ provider: Herald_Delivery_V1_Provider) async -> String {
        do {
          _ = try await delivery.putProvider(provider)
          return "accepted"
        } catch let error as RPCError {
          return error.message
        } catch {
          return "\(error)"
        }
      }
      let apns = Herald_Delivery_V1_Provider.with {
        $0.name = "apns"
        $0.channel = .push
        $0.apns = .with {
          $0.teamID = Self.teamID
          $0.keyID = Self.keyID
          $0.privateKeyVariable = "HERALD_PROVIDER_APNS_KEY"
          $0.topic = Self.topic
        }
      }
      var secretVariable = apns
      secretVariable.apns.privateKeyVariable = "HERALD_SECRETS_KEY"
      #expect(
        await providerRefusal(secretVariable).contains("apns.private_key_variable must name an environment variable HERALD_PROVIDER_"))
      var unset = apns
      unset.apns.privateKeyVariable = "HERALD_PROVIDER_NOT_SET"
      #expect(await providerRefusal(unset).contains("HERALD_PROVIDER_NOT_SET is not set in the delivery process's environment"))
      var team = apns
      team.apns.teamID = "abc"
      #expect(await providerRefusal(team).contains("apns.team_id"))
      var email = apns
      email.channel = .email
      #expect(await providerRefusal(email).contains("channel must be push"))
      #expect(await providerRefusal(apns) == "accepted")
      // A variable holds one kind of key: another provider's signing key is not an access token
      // (which would be sent to this provider's URL).
      let whatsapp = Herald_Delivery_V1_Provider.with {
        $0.name = "wa"
        $0.channel = .whatsapp
        $0.whatsapp = .with {
          $0.url = "https://collector.example.com/v21.0"
          $0.phoneNumberID = "1"
          $0.phoneNumber = "+15550100000"
          $0.accessTokenVariable = "HERALD_PROVIDER_APNS_KEY"
          $0.appSecretVariable = "HERALD_PROVIDER_WA_SECRET"
        }
      }
      #expect(await providerRefusal(whatsapp).contains("HERALD_PROVIDER_APNS_KEY is provider 'apns's apns.private_key_variable"))
      var sameTwice = whatsapp
      sameTwice.whatsapp.accessTokenVariable = "HERALD_PROVIDER_WA_SECRET"
      #expect(await providerRefusal(sameTwice).contains("both name HERALD_PROVIDER_WA_SECRET"))
      var fine = whatsapp
      fine.whatsapp.accessTokenVariable = "HERALD_PROVIDER_WA_TOKEN"
      #expect(await providerRefusal(fine) == "accepted")
    }
  }
}

/// A local HTTP server standing where the gateway's WhatsApp webhook route would, for the
/// duration of `body`: what the sandbox posts to `http://127.0.0.1:<port>/...` reaches the
/// delivery client set in `forward` as IngestWhatsAppWebhook of provider "whatsapp" (503 until
/// one is set, or when delivery answers UNAVAILABLE; 401 for another refusal).
func withWhatsAppWebhookForwarding<T: Sendable>(_ body: (_ port: Int, _ forward: ForwardedDelivery) async throws -> T) async throws -> T {
  let forward = ForwardedDelivery()
  return try await withHTTPSink(reply: { request in
    guard let delivery = forward.delivery else { return SinkReply(status: 503) }
    do {
      _ = try await delivery.ingestWhatsAppWebhook(
        .with {
          $0.provider = "whatsapp"
          $0.body = request.body
          $0.signature = request.headers["X-Hub-Signature-256"] ?? ""
        })
      return SinkReply(status: 200)
    } catch let error as RPCError where error.code == .unavailable {
      return SinkReply(status: 503, body: "\(error)")
    } catch {
      return SinkReply(status: 401, body: "\(error)")
    }
  }) { port, _ in try await body(port, forward) }
}

/// The delivery client the webhook forwarder calls, set once delivery runs.
final class ForwardedDelivery: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: PushWhatsAppDeliveryTests.Delivery?
  var delivery: PushWhatsAppDeliveryTests.Delivery? {
    get { lock.withLock { stored } }
    set { lock.withLock { stored = newValue } }
  }
}

/// POSTs JSON to the sandbox over HTTPS (trusting its certificate); its JSON answer.
func sandboxPost(port: Int, certificate: String, path: String, _ object: [String: Any]) async throws -> [String: Any] {
  try await ProviderSandboxClient.post(url: "https://127.0.0.1:\(port)\(path)", certificate: certificate, object)
}
