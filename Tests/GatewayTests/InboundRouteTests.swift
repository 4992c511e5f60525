import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

/// Inbound SMS through the gateway's public route (SPEC §11), signed as the common SMS APIs sign
/// (X-Twilio-Signature, computed here by Python's hmac, an independent implementation) or with
/// Herald's signature: STOP suppresses what is queued for the number and is confirmed once, START
/// restores, HELP answers, a forged request changes nothing, a retried one is taken in once.
@Suite(.timeLimit(.minutes(5))) struct InboundRouteTests {
  static let authToken = "twilio-auth-token-1"
  static let phone = "+14155550101"
  static let number = "+15550001111"

  /// base64(HMAC-SHA1(key, url + each field sorted by name as name+value)), by Python.
  static func twilioSignature(url: String, fields: [(String, String)], key: String = authToken) async throws -> String {
    let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
    let script = """
      import base64, hashlib, hmac, json, sys
      key, url, fields = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
      data = url + "".join(name + value for name, value in sorted(fields))
      print(base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha1).digest()).decode())
      """
    let json = String(decoding: try JSONSerialization.data(withJSONObject: fields.map { [$0.0, $0.1] }), as: UTF8.self)
    let (status, output) = try await SpawnedProcess.run(python, ["-c", script, key, url, json])
    guard status == 0, let line = output.split(separator: "\n").last else { throw TestSetupError("python failed: \(output)") }
    return String(line)
  }

  static func form(_ fields: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
  }

  @Test func smsKeywordsStopStartAndHelpThroughTheGateway() async throws {
    var settings = GatewayTests.deliverySettings
    settings.workers = 1
    settings.idle = .milliseconds(20)
    settings.refreshInterval = .milliseconds(200)
    let deliveryPort = Mutex(0)
    let databaseURL = Mutex("")
    try await withHTTPSink { smsPort, texts in
      try await GatewayTests().withGateway(
        delivery: true, deliverySettings: settings, deliveryWorkers: true, onDelivery: { port in deliveryPort.withLock { $0 = port } },
        onDatabase: { url in databaseURL.withLock { $0 = url } }
      ) { client async throws in
        let admin = GatewayTests.headers(GatewayTests.adminKey, json: true)
        let (providerStatus, _) = try await GatewayTests.post(
          client, "/v1/providers",
          [
            "name": "sms-main", "channel": "CHANNEL_SMS", "webhook_secret": Self.authToken,
            "http_sms": ["url": "http://127.0.0.1:\(smsPort)/send", "from": Self.number, "form_encoded": true],
            "sms_keywords": ["brand": "Acme Alerts", "support": "help@acme.example", "stop_keywords": ["arret"]],
          ])
        #expect(providerStatus == .ok)
        let (badKeywords, bad) = try await GatewayTests.post(
          client, "/v1/providers",
          [
            "name": "sms-two", "channel": "CHANNEL_SMS", "http_sms": ["url": "http://127.0.0.1:1/send", "from": "+15550002222"],
            "sms_keywords": ["start_keywords": ["st@p"]],
          ])
        #expect(badKeywords == .badRequest && bad["field"] as? String == "sms_keywords.start_keywords[0]", "\(bad)")
        let subscriber = try await GatewayTests.subscriberWithBothConsents(client, email: "ada@example.com", phone: Self.phone)

        // One text goes out; a second waits for tomorrow (a campaign's rest still in the queue).
        let (_, sent) = try await GatewayTests.post(
          client, "/v1/messages", ["idempotency_key": "hello", "channel": "CHANNEL_SMS", "recipient": Self.phone, "body": "Hello"])
        let sentID = try #require(sent["message_id"] as? String)
        let tomorrow = Date().addingTimeInterval(86_400).formatted(.iso8601)
        let (_, later) = try await GatewayTests.post(
          client, "/v1/messages",
          ["idempotency_key": "later", "channel": "CHANNEL_SMS", "recipient": Self.phone, "body": "Later", "not_before": tomorrow])
        let laterID = try #require(later["message_id"] as? String)
        func status(_ id: String) async throws -> String {
          try await client.execute(uri: "/v1/messages/\(id)", method: .get, headers: admin) { response async throws in
            try #require(try GatewayTests.json(response.body)["message"] as? [String: Any])["status"] as? String ?? ""
          }
        }
        try await eventually("the first text sent") { try await status(sentID) == "sent" }

        /// Posts an inbound SMS as the common SMS APIs do: a form signed with X-Twilio-Signature.
        func inbound(_ body: String, sid: String, key: String = Self.authToken) async throws -> (HTTPResponse.Status, String) {
          let fields = [("From", Self.phone), ("To", Self.number), ("Body", body), ("MessageSid", sid), ("NumMedia", "0")]
          // The test client calls the gateway without a Host; the URL signed is then http://localhost/...
          let path = "/v1/inbound/sms/sms-main"
          var headers = HTTPFields()
          headers[.contentType] = "application/x-www-form-urlencoded"
          headers[HTTPField.Name("X-Twilio-Signature")!] = try await Self.twilioSignature(
            url: "http://localhost\(path)", fields: fields, key: key)
          return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: Self.form(fields))) {
            response async throws in (response.status, String(buffer: response.body))
          }
        }
        func inboundList(_ action: String = "") async throws -> [[String: Any]] {
          try await client.execute(uri: "/v1/inbound" + (action.isEmpty ? "" : "?action=\(action)"), method: .get, headers: admin) {
            response async throws in try #require(try GatewayTests.json(response.body)["messages"] as? [[String: Any]] ?? [])
          }
        }
        func textsTo(_ phone: String, containing words: String) -> Int {
          texts.all.count { $0.form["To"] == phone && $0.form["Body"]?.contains(words) == true }
        }

        // A forged signature: 401, nothing stored or sent.
        let (forged, _) = try await inbound("STOP", sid: "SM-forged", key: "guess")
        #expect(forged == .unauthorized)
        #expect(try await inboundList().isEmpty)

        // STOP: at once, the queued text is suppressed and one confirmation goes out.
        let (stopped, twiml) = try await inbound(" Stop! ", sid: "SM-stop")
        #expect(stopped == .ok && twiml.contains("<Response></Response>"))
        let stop = try #require(try await inboundList().first)
        #expect(stop["action"] as? String == "stop" && stop["keyword"] as? String == "STOP")
        #expect(stop["answers_message_id"] as? String == sentID && stop["subscriber_id"] == nil)
        #expect(try await status(laterID) == "suppressed")
        try await eventually("the confirmation of STOP") { textsTo(Self.phone, containing: "Acme Alerts: You are unsubscribed") == 1 }
        // The provider retries the same message: stored and answered once.
        let (retried, _) = try await inbound(" Stop! ", sid: "SM-stop")
        #expect(retried == .ok)
        #expect(try await inboundList().count == 1)
        // A transactional text to the number is now suppressed at once.
        let (_, blocked) = try await GatewayTests.post(
          client, "/v1/messages", ["idempotency_key": "after-stop", "channel": "CHANNEL_SMS", "recipient": Self.phone, "body": "x"])
        #expect(blocked["suppressed"] as? Bool == true)

        // The campaign service takes the keyword in: SMS consent off, the keyword its source, and
        // the sender linked to the subscriber.
        try await withClient(port: deliveryPort.withLock { $0 }) { deliveryClient async throws in
          try await withDatabase(databaseURL.withLock { $0 }) { database async throws in
            let consumer = InboundFeedConsumer(
              client: database, source: DeliverySink(client: deliveryClient), logger: Logger(label: "test"))
            func consent() async throws -> (subscribed: Bool, history: [String]) {
              try await eventually("the inbound feed taken in") { try await consumer.pollOnce() == 0 }
              return try await client.execute(uri: "/v1/subscribers/\(subscriber)/export", method: .get, headers: admin) {
                response async throws in
                let export = try GatewayTests.json(response.body)
                let sms = (export["subscriber"] as? [String: Any])?["sms_consent"] as? [String: Any]
                let history = (export["consent_history"] as? [[String: Any]] ?? []).filter { $0["channel"] as? String == "sms" }
                return (sms?["subscribed"] as? Bool ?? false, history.compactMap { $0["source"] as? String })
              }
            }
            try await eventually("SMS consent withdrawn by STOP") { try await !consent().subscribed }
            #expect(try await consent().history == ["form", "sms-keyword:STOP"])
            #expect(try await inboundList().first?["subscriber_id"] as? String == subscriber)

            // HELP is answered even now; START restores, and is confirmed.
            _ = try await inbound("help", sid: "SM-help")
            try await eventually("the help text") {
              textsTo(Self.phone, containing: "Msg & data rates may apply. Help: help@acme.example") == 1
            }
            _ = try await inbound("Start", sid: "SM-start")
            try await eventually("the confirmation of START") { textsTo(Self.phone, containing: "You are subscribed again") == 1 }
            try await eventually("SMS consent back by START") { try await consent().subscribed }
            #expect(try await consent().history == ["form", "sms-keyword:STOP", "sms-keyword:START"])
            let (_, again) = try await GatewayTests.post(
              client, "/v1/messages", ["idempotency_key": "after-start", "channel": "CHANNEL_SMS", "recipient": Self.phone, "body": "x"])
            // (proto JSON leaves a false out)
            #expect(again["message_id"] is String && again["suppressed"] as? Bool ?? false == false)

            // Herald's own JSON shape, signed as the delivery webhooks are; plain words asking to stop.
            let json = Data(#"{"from": "\#(Self.phone)", "to": "\#(Self.number)", "body": "please stop texting me", "id": "j-1"}"#.utf8)
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            headers[HTTPField.Name("X-Herald-Signature")!] = WebhookSignature.header(
              secret: Self.authToken, timestamp: Int(Date().timeIntervalSince1970), body: json)
            let plain = try await client.execute(
              uri: "/v1/inbound/sms/sms-main", method: .post, headers: headers, body: ByteBuffer(bytes: json)
            ) { response async throws in (response.status, try GatewayTests.json(response.body)) }
            #expect(plain.0 == .ok)
            let plainInbound = try #require(plain.1["inbound"] as? [String: Any])
            #expect(plainInbound["action"] as? String == "stop" && plainInbound["keyword"] as? String == "PLEASE STOP TEXTING ME")
            try await eventually("SMS consent withdrawn by plain words") { try await !consent().subscribed }
            _ = try await inbound("yes", sid: "SM-yes")
            try await eventually("SMS consent back by YES") { try await consent().subscribed }

            // A message that may ask to stop waits for an operator, who decides.
            _ = try await inbound("Can I cancel my order for tomorrow?", sid: "SM-maybe")
            let review = try #require(try await inboundList("review").first)
            #expect(review["keyword"] as? String == "CANCEL")
            let reviewID = try #require(review["id"] as? String)
            let (decided, decision) = try await GatewayTests.post(client, "/v1/inbound/\(reviewID)/review", ["decision": "stop"])
            #expect(decided == .ok && decision["action"] as? String == "stop_reviewed")
            let (twice, _) = try await GatewayTests.post(client, "/v1/inbound/\(reviewID)/review", ["decision": "dismiss"])
            #expect(twice == .conflict)
            let (badDecision, badProblem) = try await GatewayTests.post(client, "/v1/inbound/\(reviewID)/review", ["decision": "maybe"])
            #expect(badDecision == .badRequest && badProblem["field"] as? String == "decision")
            try await eventually("SMS consent withdrawn by the review") { try await !consent().subscribed }
            #expect(try await consent().history.last == "sms-reply:reviewed")
            try await eventually("the second confirmation of an opt-out") {
              textsTo(Self.phone, containing: "Acme Alerts: You are unsubscribed") == 3
            }

            // An auto-response rule on a keyword, at most once a day: the first sender is
            // answered, the second is past the cap (recorded as skipped).
            let (ruleStatus, rule) = try await GatewayTests.post(
              client, "/v1/auto-response-rules",
              [
                "name": "hours", "channel": "sms", "trigger": "keyword", "pattern": "hours", "body": "Open 9-5, {{who}}.",
                "variables": [["name": "who", "default_value": "friend"]], "daily_cap": 1,
              ])
            #expect(ruleStatus == .created, "\(rule)")
            let (badRule, badRuleProblem) = try await GatewayTests.post(
              client, "/v1/auto-response-rules", ["name": "x", "channel": "sms", "trigger": "any", "pattern": "hours", "body": "x"])
            #expect(badRule == .badRequest, "\(badRuleProblem)")
            for (sender, sid) in [("+14155550177", "SM-hours-1"), ("+14155550178", "SM-hours-2")] {
              let fields = [("From", sender), ("To", Self.number), ("Body", "Hours?"), ("MessageSid", sid)]
              var headers = HTTPFields()
              headers[.contentType] = "application/x-www-form-urlencoded"
              headers[HTTPField.Name("X-Twilio-Signature")!] = try await Self.twilioSignature(
                url: "http://localhost/v1/inbound/sms/sms-main", fields: fields)
              try await client.execute(
                uri: "/v1/inbound/sms/sms-main", method: .post, headers: headers, body: ByteBuffer(string: Self.form(fields))
              ) { response async throws in #expect(response.status == .ok) }
            }
            try await eventually("the answer to the first sender") {
              _ = try await consumer.pollOnce()
              return textsTo("+14155550177", containing: "Open 9-5, friend.") == 1
            }
            try await client.execute(uri: "/v1/auto-responses", method: .get, headers: admin) { response async throws in
              let responses = try #require(try GatewayTests.json(response.body)["responses"] as? [[String: Any]])
              #expect(Set(responses.compactMap { $0["status"] as? String }) == ["queued", "skipped"], "\(responses)")
              #expect(responses.contains { ($0["detail"] as? String)?.hasPrefix("daily cap") == true })
            }
            #expect(textsTo("+14155550178", containing: "Open") == 0)

            // YES from a number that never opted out answers some question of its own: a reply,
            // no opt-in, no confirmation.
            let yes = [("From", "+14155550177"), ("To", Self.number), ("Body", "Yes"), ("MessageSid", "SM-yes-2")]
            var yesHeaders = HTTPFields()
            yesHeaders[.contentType] = "application/x-www-form-urlencoded"
            yesHeaders[HTTPField.Name("X-Twilio-Signature")!] = try await Self.twilioSignature(
              url: "http://localhost/v1/inbound/sms/sms-main", fields: yes)
            try await client.execute(
              uri: "/v1/inbound/sms/sms-main", method: .post, headers: yesHeaders, body: ByteBuffer(string: Self.form(yes))
            ) { response async throws in #expect(response.status == .ok) }
            let yesInbound = try #require(try await inboundList().first)
            #expect(["reply", "none"].contains(yesInbound["action"] as? String ?? ""), "\(yesInbound)")
            #expect(textsTo("+14155550177", containing: "subscribed again") == 0)
          }
        }

        // Bad input names its field; a body of another media type is 415 once the signature holds.
        let missing = [("To", Self.number), ("Body", "hi"), ("MessageSid", "SM-x")]
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        headers[HTTPField.Name("X-Twilio-Signature")!] = try await Self.twilioSignature(
          url: "http://localhost/v1/inbound/sms/sms-main", fields: missing)
        try await client.execute(
          uri: "/v1/inbound/sms/sms-main", method: .post, headers: headers, body: ByteBuffer(string: Self.form(missing))
        ) { response async throws in
          #expect(response.status == .badRequest)
          #expect(try GatewayTests.json(response.body)["field"] as? String == "From")
        }
        try await client.execute(uri: "/v1/inbound/sms/sms-main", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer())
        {
          response async throws in #expect(response.status == .unauthorized)
        }
        try await client.execute(uri: "/v1/inbound?action=nonsense", method: .get, headers: admin) { response async throws in
          #expect(response.status == .badRequest)
        }
      }
    }
  }
}
