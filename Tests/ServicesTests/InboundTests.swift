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

/// Inbound messages (SPEC §11): SMS keywords as people write them, the inbound-parse shapes, and
/// an e-mail reply to a campaign matched and counted (the SMS flow through the gateway, with
/// signatures made by Python, is in GatewayTests' InboundRouteTests).
@Suite(.timeLimit(.minutes(5))) struct InboundTests {
  typealias Campaign = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  @Test func keywordsAreWholeMessagesAndPlainRequestsToStopCountAsStop() {
    let keywords = SMSKeywords()
    let cases: [(String, SMSKeywords.Verdict)] = [
      ("STOP", .stop(keyword: "STOP")), (" stop. ", .stop(keyword: "STOP")), ("Stop!", .stop(keyword: "STOP")),
      ("opt-out", .stop(keyword: "OPTOUT")), ("Opt Out", .stop(keyword: "OPT OUT")), ("cancel", .stop(keyword: "CANCEL")),
      ("END", .stop(keyword: "END")), ("stopall", .stop(keyword: "STOPALL")), ("revoke", .stop(keyword: "REVOKE")),
      ("start", .start(keyword: "START")), ("Unstop", .start(keyword: "UNSTOP")), ("yes", .start(keyword: "YES")),
      ("help", .help(keyword: "HELP")), ("Info?", .help(keyword: "INFO")),
      // Plain requests to stop, in a person's words (FCC: any reasonable means).
      ("stop texting me", .stop(keyword: "STOP TEXTING ME")), ("Remove me", .stop(keyword: "REMOVE ME")),
      ("unsubscribe please", .stop(keyword: "UNSUBSCRIBE PLEASE")),
      ("Please don't text me anymore", .stop(keyword: "PLEASE DONT TEXT ME ANYMORE")),
      ("no more texts", .stop(keyword: "NO MORE TEXTS")),
      // Maybe: an operator decides.
      ("Can I cancel my order for tomorrow?", .review(words: "CANCEL")),
      ("I cannot stop laughing at this offer lol", .review(words: "STOP")),
      // Not a keyword: words around a keyword that is not a request, and ordinary replies.
      ("please end these texts", .stop(keyword: "PLEASE END THESE TEXTS")),
      ("take me off your list", .stop(keyword: "TAKE ME OFF YOUR LIST")),
      ("opt me out", .stop(keyword: "OPT ME OUT")), ("unsub", .stop(keyword: "UNSUB")),
      // END in a longer message may mean it: an operator decides.
      ("See you at the end of the day", .review(words: "END")),
      ("Thanks, see you Friday", .other), ("", .other),
      ("helpful, thanks", .other),
    ]
    for (text, verdict) in cases {
      #expect(keywords.classify(text) == verdict, "\(text)")
    }
    // A number's own keywords.
    let own = SMSKeywords(
      .with {
        $0.stopKeywords = ["arret"]
        $0.helpKeywords = ["aide"]
      })
    #expect(own.classify("Arrêt") == .other)
    #expect(own.classify("ARRET") == .stop(keyword: "ARRET") && own.classify("aide") == .help(keyword: "AIDE"))
    let texts = SMSKeywords.Texts(
      .with {
        $0.brand = "Acme"
        $0.support = "help@acme.example"
      })
    #expect(texts.help == "Acme: Msg frequency varies. Msg & data rates may apply. Help: help@acme.example. Reply STOP to cancel.")
    #expect(texts.stop.hasPrefix("Acme: You are unsubscribed") && !texts.stop.contains("offer"))
  }

  @Test func inboundShapesAreReadAndBadOnesNameTheirField() throws {
    let form = Data("From=%2B14155550101&To=%2B15550001111&Body=Stop+now%21&MessageSid=SM1&NumMedia=0".utf8)
    let sms = try InboundPayload.sms(form, contentType: "application/x-www-form-urlencoded; charset=utf-8")
    #expect(sms.from == "+14155550101" && sms.to == "+15550001111" && sms.text == "Stop now!" && sms.providerMessageID == "SM1")
    let json = Data(#"{"from": "+14155550101", "to": "+15550001111", "text": "hi", "id": "abc"}"#.utf8)
    #expect(try InboundPayload.sms(json, contentType: "application/json").text == "hi")
    for (body, field) in [
      ("To=1&Body=x&MessageSid=a", "From"), ("From=0800&To=1&Body=x&MessageSid=a", "From"),
      ("From=%2B14155550101&To=1&Body=x", "MessageSid"),
      ("From=%2B14155550101&Body=x&MessageSid=a", "To"), ("From=%2B14155550101&To=1&Body=%00&MessageSid=a", "text"),
    ] {
      #expect(throws: RPCError.self, "\(body)") {
        try InboundPayload.sms(Data(body.utf8), contentType: "application/x-www-form-urlencoded")
      }
      do {
        _ = try InboundPayload.sms(Data(body.utf8), contentType: "application/x-www-form-urlencoded")
      } catch {
        #expect(error.field == field, "\(body): \(error)")
      }
    }
    let message = UUID()
    let headers = """
      Received: from mx.example.org
      Message-ID: <CAF1@mail.example.org>
      In-Reply-To: <\(message.lowercasedString)@news.example.com>
      References: <old@elsewhere.example>
       <\(message.lowercasedString)@news.example.com>
      Subject: Re: News
      """
    let email = try InboundPayload.email(
      try JSONSerialization.data(withJSONObject: [
        "from": "Ada Lovelace <Ada@Example.com>", "to": "news@news.example.com", "subject": "Re: News", "html": "<p>Thanks!</p>",
        "headers": headers,
      ]), contentType: "application/json")
    #expect(email.from == "ada@example.com" && email.providerMessageID == "<CAF1@mail.example.org>")
    #expect(email.references == [message] && email.text.trimmingCharacters(in: .whitespacesAndNewlines) == "Thanks!")
    #expect(email.automatic == nil)
    for (extra, automatic) in [
      ("Auto-Submitted: auto-replied", true), ("Auto-Submitted: no", false), ("Precedence: bulk", true),
      ("List-Id: <news.example.org>", true), ("Return-Path: <>", true),
    ] {
      let parsed = try InboundPayload.email(
        try JSONSerialization.data(withJSONObject: ["from": "a@b.example", "to": "c@d.example", "headers": headers + "\n" + extra]),
        contentType: "application/json")
      #expect((parsed.automatic != nil) == automatic, "\(extra)")
    }
    for (extra, why) in [
      ("Precedence: auto_reply", "Precedence"), ("X-Auto-Response-Suppress: DR, AutoReply", "X-Auto-Response-Suppress"),
      ("Content-Type: multipart/report; report-type=delivery-status", "report"),
    ] {
      let parsed = try InboundPayload.email(
        try JSONSerialization.data(withJSONObject: ["from": "a@b.example", "to": "c@d.example", "headers": headers + "\n" + extra]),
        contentType: "application/json")
      #expect(parsed.automatic?.contains(why) == true, "\(extra)")
    }
    // The inbound-parse services' multipart/form-data (an attachment part is left out).
    let multipart = """
      --XyZ\r
      Content-Disposition: form-data; name="from"\r
      \r
      Ada <ada@example.com>\r
      --XyZ\r
      Content-Disposition: form-data; name="to"\r
      \r
      news@herald.test\r
      --XyZ\r
      Content-Disposition: form-data; name="text"\r
      \r
      Line one\r
      line two\r
      --XyZ\r
      Content-Disposition: form-data; name="attachment1"; filename="a.txt"\r
      Content-Type: text/plain\r
      \r
      not a field\r
      --XyZ\r
      Content-Disposition: form-data; name="headers"\r
      \r
      Message-ID: <m1@example.com>\r
      --XyZ--\r

      """
    let parsed = try InboundPayload.email(Data(multipart.utf8), contentType: "multipart/form-data; boundary=XyZ")
    #expect(parsed.from == "ada@example.com" && parsed.text == "Line one\r\nline two" && parsed.providerMessageID == "<m1@example.com>")
    #expect(throws: RPCError.self) { try InboundPayload.email(Data("junk".utf8), contentType: "multipart/form-data; boundary=XyZ") }
    do {
      _ = try InboundPayload.email(Data("x".utf8), contentType: "text/plain")
    } catch {
      #expect(error.field == "Content-Type")
    }
    let daemon = try InboundPayload.email(
      Data("from=MAILER-DAEMON%40mx.example.org&to=c%40d.example&message_id=%3Cx%40y%3E".utf8),
      contentType: "application/x-www-form-urlencoded")
    #expect(daemon.automatic != nil)
    #expect(throws: RPCError.self) {
      try InboundPayload.email(Data(#"{"from": "a@b.example", "to": "c@d.example"}"#.utf8), contentType: "application/json")
    }
  }

  /// A campaign e-mail's reply is matched by its In-Reply-To to the message and campaign and
  /// counted in analytics and engagement; an automatic answer to it is stored but counted nowhere.
  @Test func anEmailReplyIsMatchedToItsCampaignAndCountedButAnAutoReplyIsNot() async throws {
    try await MailTests().withDelivery(secrets: MailTests.secrets) { delivery, database, sink, deliveryPort, url in
      var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
      provider.webhookSecret = "inbound-secret"
      provider.smtp.inboundDomain = "reply.herald.test"
      _ = try await delivery.putProvider(provider)
      var settings = CampaignSettings()
      settings.publicURL = TrackingTests.publicURL
      settings.secrets = MailTests.secrets
      var definition = CampaignDefinition.definition(settings: settings)
      definition.readinessDependencies = []
      definition.makeWorkers = { _ in [] }
      try await withRunningService(
        definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { client async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            let sinkClient = DeliverySink(client: deliveryClient)
            let campaign = Campaign(wrapping: client)
            let relay = OutboxRelay(
              client: database, sink: sinkClient, links: UnsubscribeLinks(publicURL: TrackingTests.publicURL, secrets: MailTests.secrets),
              tracking: TrackingTests.tracking, logger: Logger(label: "test.relay"))
            let feed = DeliveryFeedConsumer(client: database, source: sinkClient, logger: Logger(label: "test.feed"))
            let inbound = InboundFeedConsumer(client: database, source: sinkClient, logger: Logger(label: "test.inbound"))

            let (list, ada) = try await UnsubscribeLinkTests.newsListWithAda(campaign)
            let template = try await campaign.createTemplate(
              .with {
                $0.name = "news"
                $0.channel = "email"
                $0.subject = "News"
                $0.body = "<p>News.</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>"
                $0.variables = [.with { $0.name = "unsubscribe_url" }]
              })
            let created = try await campaign.createCampaign(
              .with {
                $0.name = "news"
                $0.channel = "email"
                $0.listID = list.id
                $0.templateID = template.id
              })
            // An answer to every e-mail reply, at most once an hour per sender.
            let rule = try await campaign.createAutoResponseRule(
              .with {
                $0.name = "thanks"
                $0.channel = "email"
                $0.trigger = "any"
                $0.body = "Hi {{first_name}}, thanks for writing about {{campaign.name}}: \"{{inbound.text}}\" {{signoff}}"
                $0.variables = [
                  .with {
                    $0.name = "first_name"
                    $0.defaultValue = "there"
                  },
                  .with {
                    $0.name = "signoff"
                    $0.defaultValue = "— Acme"
                  },
                ]
                $0.cooldownSeconds = 3600
              })
            for (change, field): (@Sendable (inout Herald_Campaign_V1_AutoResponseRule) -> Void, String) in [
              (
                {
                  $0.trigger = "regex"
                  $0.pattern = "("
                }, "pattern"
              ), ({ $0.body = "{{nope}}" }, "body"),
              ({ $0.name = "thanks" }, "name"),
              (
                {
                  $0.channel = "sms"
                  $0.subject = "Re"
                }, "subject"
              ),
            ] {
              var bad = Herald_Campaign_V1_AutoResponseRule.with {
                $0.name = "bad"
                $0.channel = "email"
                $0.trigger = "any"
                $0.body = "x"
              }
              change(&bad)
              do {
                _ = try await campaign.createAutoResponseRule(bad)
                Issue.record("rule \(bad) was created")
              } catch let error as RPCError {
                #expect(error.field == field, "\(error)")
              }
            }
            let preview = try await campaign.previewAutoResponse(
              .with {
                $0.channel = "email"
                $0.text = "Great news"
                $0.campaignID = created.id
                $0.subscriberID = ada.id
              })
            #expect(preview.answered && preview.ruleID == rule.id)
            #expect(preview.body == "Hi Ada, thanks for writing about news: \"Great news\" — Acme", "\(preview.body)")
            #expect(
              try await !campaign.previewAutoResponse(
                .with {
                  $0.channel = "sms"
                  $0.text = "hi"
                }
              ).answered)

            _ = try await campaign.sendCampaign(.with { $0.id = created.id })
            try await relay.drain()
            try await eventually("the e-mail at the SMTP server") { !sink.messages.isEmpty }
            let sent = try #require(sink.messages.first)
            let messageID = try #require(
              String(decoding: sent.raw, as: UTF8.self).components(separatedBy: "\r\n")
                .first { $0.lowercased().hasPrefix("message-id:") }?.dropFirst("Message-ID:".count).trimmingCharacters(in: .whitespaces))

            func post(_ fields: [String: String], secret: String = "inbound-secret") async throws
              -> Herald_Delivery_V1_IngestInboundResponse
            {
              let body = try JSONSerialization.data(withJSONObject: fields)
              return try await delivery.ingestInbound(
                .with {
                  $0.provider = "smtp-main"
                  $0.channel = "email"
                  $0.body = body
                  $0.contentType = "application/json"
                  $0.heraldSignature = WebhookSignature.header(secret: secret, timestamp: Int(Date().timeIntervalSince1970), body: body)
                })
            }
            let reply = [
              "from": "Ada <ada@example.com>", "to": "news@herald.test", "subject": "Re: News", "text": "Loved it!",
              "headers": "Message-ID: <reply-1@example.com>\nIn-Reply-To: \(messageID)\nReferences: \(messageID)",
            ]
            do {
              _ = try await post(reply, secret: "guess")
              Issue.record("a forged inbound e-mail was taken in")
            } catch let error as RPCError {
              #expect(error.code == .unauthenticated && error.field == "signature")
            }
            let first = try await post(reply)
            #expect(!first.duplicate && first.inbound.action == "reply" && first.inbound.campaignID == created.id)
            #expect(first.inbound.subscriberID == ada.id && first.inbound.from == "ada@example.com")
            // The provider retries: stored and counted once.
            let again = try await post(reply)
            #expect(again.duplicate && again.inbound.id == first.inbound.id)
            // An out-of-office answer to the campaign: stored, never counted nor answered.
            var automatic = reply
            automatic["headers"] = "Message-ID: <ooo-1@example.com>\nIn-Reply-To: \(messageID)\nAuto-Submitted: auto-replied"
            let ooo = try await post(automatic)
            #expect(ooo.inbound.action == "auto_reply" && ooo.inbound.keyword == "Auto-Submitted: auto-replied")

            let events = try await delivery.getMessage(.with { $0.id = first.inbound.answersMessageID }).events
            #expect(events.filter { $0.status == "replied" }.count == 1)
            try await eventually("the feed has counted the reply") {
              _ = try await feed.pollOnce()
              return try await campaign.getCampaignAnalytics(.with { $0.campaignID = created.id }).totals.replied == 1
            }
            _ = try await inbound.pollOnce()
            let analytics = try await campaign.getCampaignAnalytics(.with { $0.campaignID = created.id })
            #expect(analytics.totals.replied == 1 && analytics.variants.map(\.counts.replied) == [1])
            let score = try #require(try await campaign.listEngagement(.init()).subscribers.first { $0.subscriberID == ada.id })
            #expect(score.score > 0)
            // A malformed body names its field; nothing is stored.
            do {
              _ = try await post(["from": "ada@example.com", "to": "news@herald.test", "text": "no id"])
              Issue.record("an e-mail without a Message-ID was taken in")
            } catch let error as RPCError {
              #expect(error.code == .invalidArgument && error.field == "headers")
            }
            let stored = try await delivery.listInboundMessages(.init()).messages
            #expect(stored.map(\.action) == ["auto_reply", "reply"])

            // The reply got one answer, threaded and marked automatic; the out-of-office none.
            try await eventually("the automatic answer at the SMTP server") { sink.messages.count == 2 }
            let answer = try #require(sink.messages.last)
            let raw = String(decoding: answer.raw, as: UTF8.self)
            #expect(answer.to == ["ada@example.com"] && answer.subject == "Re: News", "\(answer.subject)")
            #expect(raw.contains("In-Reply-To: <reply-1@example.com>") && raw.contains("Auto-Submitted: auto-replied"), "\(raw)")
            #expect(answer.text.contains("Hi Ada, thanks for writing about news: \"Loved it!\""), "\(answer.text)")
            // A second reply within the hour: recorded, not answered.
            var second = reply
            second["headers"] = "Message-ID: <reply-2@example.com>\nIn-Reply-To: \(messageID)"
            _ = try await post(second)
            try await eventually("the second reply taken in") {
              _ = try await inbound.pollOnce()
              return try await campaign.listAutoResponses(.init()).responses.count == 2
            }
            let responses = try await campaign.listAutoResponses(.init()).responses
            #expect(responses.map(\.status).sorted() == ["queued", "skipped"])
            #expect(responses.first { $0.status == "skipped" }?.detail.hasPrefix("cooldown") == true)
            #expect(responses.first { $0.status == "queued" }?.inboundID == first.inbound.id)
            #expect(sink.messages.count == 2)

            // The campaign e-mail's Reply-To and List-Unsubscribe mailto: carry signed addresses on
            // the inbound domain (RFC 2369, beside the one-click URL).
            let sentHeaders = String(decoding: sent.raw, as: UTF8.self).replacingOccurrences(of: "\r\n ", with: " ")
            let replyTo = String(
              try #require(sentHeaders.firstMatch(of: /Reply-To: <(reply\+[a-z2-7]{44}@reply\.herald\.test)>/)?.output.1))
            let mailto = try #require(
              sentHeaders.firstMatch(of: /List-Unsubscribe: <https:[^>]+>, <mailto:(unsubscribe\+[a-z2-7]{44}@reply\.herald\.test)>/)?
                .output.1,
              "\(sentHeaders)")
            // A reply that names nothing but the address it went to is matched by its token (a
            // relay may upper-case it); a forged token matches nothing.
            let byToken = try await post([
              "from": "ada@example.com", "to": "News <\(replyTo.uppercased())>", "text": "By the address",
              "headers": "Message-ID: <reply-3@example.com>",
            ])
            #expect(byToken.inbound.action == "reply" && byToken.inbound.campaignID == created.id, "\(byToken.inbound)")
            var forgedAddress = Array(replyTo)
            forgedAddress[10] = forgedAddress[10] == "a" ? "b" : "a"
            let forged = try await post([
              "from": "ada@example.com", "to": String(forgedAddress), "text": "Forged", "headers": "Message-ID: <reply-4@example.com>",
            ])
            #expect(forged.inbound.action == "none" && forged.inbound.campaignID.isEmpty)
            // The mailbox provider's unsubscribe by mail: empty, even marked automatic, it unsubscribes.
            let unsubscribe = try await post([
              "from": "ada@example.com", "to": String(mailto), "subject": "Unsubscribe", "text": "",
              "headers": "Message-ID: <unsub-1@example.com>\nAuto-Submitted: auto-generated",
            ])
            #expect(unsubscribe.inbound.action == "unsubscribe" && unsubscribe.inbound.campaignID == created.id)
            try await eventually("the e-mail consent withdrawn by mail") {
              _ = try await inbound.pollOnce()
              return try await !campaign.getSubscriber(.with { $0.id = ada.id }).emailConsent.subscribed
            }
            let history = try await campaign.exportSubscriber(.with { $0.id = ada.id }).consentHistory
            #expect(history.last?.source == "list-unsubscribe" && history.last?.campaignID == created.id, "\(history)")
          }
        }
      }
    }
  }
}

/// The signed addresses of Reply-To and List-Unsubscribe's mailto: (SPEC §10, §11).
@Suite struct AddressTokenTests {
  static let keys = try! SecretBox("new:" + Data(repeating: 1, count: 32).base64EncodedString()).derivedKeys(purpose: AddressToken.purpose)
  static let rotated = try! SecretBox(
    "newer:" + Data(repeating: 2, count: 32).base64EncodedString() + ",new:" + Data(repeating: 1, count: 32).base64EncodedString()
  ).derivedKeys(purpose: AddressToken.purpose)

  @Test func addressesFitALocalPartSurviveCaseAndRotationAndRefuseTampering() throws {
    let message = UUID()
    for kind in [AddressToken.Kind.reply, .unsubscribe] {
      let address = try #require(AddressToken(kind: kind, message: message).address(domain: "reply.example.com", keys: Self.keys))
      let local = address.split(separator: "@")[0]
      #expect(local.utf8.count <= 64 && local.hasPrefix("\(kind.prefix)+"), "\(address)")
      #expect(AddressToken.open(address: address, keys: Self.keys) == AddressToken(kind: kind, message: message))
      #expect(AddressToken.open(address: address.uppercased(), keys: Self.keys)?.message == message)
      // A key rotation: addresses signed with the old key still open.
      #expect(AddressToken.open(address: address, keys: Self.rotated)?.message == message)
      // Any other key, kind or byte: nothing.
      let other = try SecretBox("x:" + Data(repeating: 9, count: 32).base64EncodedString()).derivedKeys(purpose: AddressToken.purpose)
      #expect(AddressToken.open(address: address, keys: other) == nil)
      let swapped = address.replacingOccurrences(of: "\(kind.prefix)+", with: kind == .reply ? "unsubscribe+" : "reply+")
      #expect(AddressToken.open(address: swapped, keys: Self.keys) == nil)
      var bytes = Array(address)
      let index = local.count - 3
      bytes[index] = bytes[index] == "a" ? "b" : "a"
      #expect(AddressToken.open(address: String(bytes), keys: Self.keys) == nil)
    }
    #expect(AddressToken(kind: .reply, message: message).address(domain: "x.example", keys: []) == nil)
    for junk in ["reply+@x.example", "reply+!!!@x.example", "hello@x.example", "reply+abc", ""] {
      #expect(AddressToken.open(address: junk, keys: Self.keys) == nil, "\(junk)")
    }
  }
}
