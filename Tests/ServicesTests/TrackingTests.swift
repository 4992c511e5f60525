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

/// Engagement tracking (SPEC §10): the relay puts a signed pixel and signed click redirects into
/// a tracked campaign's HTML, delivery records each hit as an event judged a person's or a
/// machine's, and campaign analytics count the machines' apart.
@Suite(.timeLimit(.minutes(5))) struct TrackingTests {
  typealias Campaign = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  static let publicURL = "https://mail.herald.test"
  static let tracking = TrackingLinks(publicURL: publicURL, secrets: MailTests.secrets)

  @Test func base64URLMatchesFoundationForEveryRemainder() {
    for count in 0..<12 {
      let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 37 + 250) }
      var text: [UInt8] = []
      bytes.withUnsafeBytes { SignedToken.appendBase64URL($0, to: &text) }
      let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
      #expect(String(decoding: text, as: UTF8.self) == expected, "\(count) bytes")
      #expect(SignedToken.data(base64URL: expected) == Data(bytes))
    }
  }

  @Test func linksAreRewrittenButNotTheUnsubscribeLinkAndThePixelGoesBeforeTheBodyEnds() throws {
    let campaign = UUID()
    let subscriber = UUID()
    let tracking = try #require(LinkTracking(links: Self.tracking, opens: true, clicks: true))
    let html = """
      <html><body><A class="x" HREF="https://shop.example/a?x=1&amp;y=2">Shop</A>
      <a href=https://example.org/b>B</a> <abbr href="https://no.example">no</abbr>
      <a href='mailto:help@example.com'>mail</a> <a href="\(Self.publicURL)/u/v1.k1.abc.def">Unsubscribe</a>
      </BODY></html>
      """
    let out = tracking.apply(to: html, campaign: campaign, subscriber: subscriber)
    let clicks = LinkTracking.links(in: out).map(\.url).filter { $0.hasPrefix("\(Self.publicURL)/t/c/") }
    #expect(clicks.count == 2)
    let tokens = clicks.compactMap { Self.tracking.verify(String($0.split(separator: "/").last!)) }
    #expect(
      tokens == [
        TrackingToken(kind: .click, campaign: campaign, subscriber: subscriber, link: 0, links: 2, url: "https://shop.example/a?x=1&y=2"),
        TrackingToken(kind: .click, campaign: campaign, subscriber: subscriber, link: 1, links: 2, url: "https://example.org/b"),
      ])
    #expect(out.contains("<abbr href=\"https://no.example\">") && out.contains("href='mailto:help@example.com'"))
    #expect(out.contains("href=\"\(Self.publicURL)/u/v1.k1.abc.def\""))
    let pixel = try #require(out.range(of: "<img src=\"\(Self.publicURL)/t/o/"))
    #expect(pixel.lowerBound < out.range(of: "</BODY>")!.lowerBound)
    // Opens only: links untouched; no </body>: the pixel at the end.
    let opensOnly = try #require(LinkTracking(links: Self.tracking, opens: true, clicks: false))
    let bare = opensOnly.apply(to: "<p><a href=\"https://x.example\">x</a></p>", campaign: campaign, subscriber: subscriber)
    #expect(bare.hasPrefix("<p><a href=\"https://x.example\">x</a></p><img src=\"\(Self.publicURL)/t/o/v1.k1."))
    #expect(LinkTracking(links: Self.tracking, opens: false, clicks: false) == nil)
    #expect(LinkTracking(links: .none, opens: true, clicks: true) == nil)
  }

  /// Links as a browser finds them: a `>` inside a quoted value does not end the tag, attributes
  /// may follow a quote without a space, and links in comments and scripts are none; targets that
  /// would not survive a redirect as written (too long, control characters) are left alone.
  @Test func onlyTheLinksABrowserWouldFollowAreTracked() throws {
    let html = """
      <a title="Next >" href="https://t.example/1">1</a> <a class="x"href='https://t.example/2'>2</a>
      <!-- <a href="https://comment.example/">old</a> --> <script>var s = '<a href="https://script.example/">';</script>
      <style>a[href] { color: red }</style> <a href="https://long.example/\(String(repeating: "x", count: 3000))">long</a>
      <a href="https://t.example/a&#0;b">nul</a> <a href="https://t.example/a&#9;b">tab</a>
      <a data-href="https://data.example/" href = https://t.example/3 >3</a>
      """
    let found: [String] = LinkTracking.links(in: html).map { String($0.url.prefix(25)) }
    let expected: [String] = [
      "https://t.example/1", "https://t.example/2", "https://long.example/xxxx", "https://t.example/a\u{0}b",
      "https://t.example/a\tb", "https://t.example/3",
    ]
    #expect(found == expected)
    let tracking = try #require(LinkTracking(links: Self.tracking, opens: false, clicks: true))
    let out = tracking.apply(to: html, campaign: UUID(), subscriber: UUID())
    let tracked = LinkTracking.links(in: out).map(\.url).compactMap { Self.tracking.verify(String($0.split(separator: "/").last!)) }
    #expect(tracked.map(\.url) == ["https://t.example/1", "https://t.example/2", "https://t.example/3"])
    #expect(tracked.map(\.links) == [3, 3, 3])
    #expect(out.contains("https://comment.example/") && out.contains("https://script.example/") && out.contains("https://data.example/"))
  }

  @Test func aTokenChecksOutOnlyAsSignedAndAClickOnlyGoesWhereItWasSigned() throws {
    let token = TrackingToken(
      kind: .click, campaign: UUID(), subscriber: UUID(), link: 3, links: 5, url: "https://example.org/ü?q=1")
    let signers = try #require(Self.tracking.signers())
    let url = token.sign(with: signers.click)
    #expect(url.hasPrefix("\(Self.publicURL)/t/c/v1.k1."))
    let text = String(url.split(separator: "/").last!)
    #expect(Self.tracking.verify(text) == token)
    var changed = Array(text)
    changed[changed.count / 2] = changed[changed.count / 2] == "A" ? "B" : "A"
    #expect(Self.tracking.verify(String(changed)) == nil)
    // Signed for unsubscribe links (another purpose): not a tracking token.
    let unsubscribe = UnsubscribeToken(subscriber: UUID(), campaign: UUID(), channel: "email").text(
      keys: MailTests.secrets.derivedKeys(purpose: "unsubscribe links v1"))
    #expect(Self.tracking.verify(try #require(unsubscribe)) == nil)
    #expect(TrackingLinks.none.verify(text) == nil)
  }

  @Test func signalsAddUpToAVerdictAndNoSingleWeakOneDecides() {
    typealias Hit = EngagementSignals.Hit
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
    // A person an hour later; a person at once; Gmail's proxy (a person's open) soon after the send.
    #expect(
      !EngagementSignals(Hit(kind: .open, userAgent: browser, remoteAddress: "203.0.113.9", method: "GET", secondsAfterSend: 3600)).machine)
    let quick = EngagementSignals(Hit(kind: .open, userAgent: browser, remoteAddress: "203.0.113.9", method: "GET", secondsAfterSend: 4))
    #expect(!quick.machine && quick.signals == ["within-10s-of-send"])
    let gmail = EngagementSignals(
      Hit(
        kind: .open, userAgent: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        remoteAddress: "66.249.84.1", method: "GET", secondsAfterSend: 5))
    #expect(!gmail.machine && gmail.signals == ["image-proxy:google", "within-10s-of-send"])
    // Apple's privacy proxy; a scanner; HEAD; no user agent.
    let apple = EngagementSignals(
      Hit(kind: .open, userAgent: "Mozilla/5.0", remoteAddress: "17.58.1.2", method: "GET", secondsAfterSend: 2))
    #expect(apple.machine && apple.signals.first == "apple-mail-privacy-protection")
    #expect(
      EngagementSignals(Hit(kind: .click, userAgent: "Mimecast/1.0", remoteAddress: "198.51.100.1", method: "GET", secondsAfterSend: 900))
        .machine)
    #expect(
      EngagementSignals(Hit(kind: .click, userAgent: browser, remoteAddress: "198.51.100.1", method: "HEAD", secondsAfterSend: 900)).machine
    )
    #expect(EngagementSignals(Hit(kind: .open, userAgent: "", remoteAddress: "198.51.100.1", method: "GET", secondsAfterSend: 900)).machine)
    // Every link of a message at once is a scanner, even with a browser's user agent; two links
    // of five clicked a minute apart are a person.
    let burst = EngagementSignals(
      Hit(
        kind: .click, userAgent: browser, remoteAddress: "198.51.100.1", method: "GET", secondsAfterSend: 900, link: 2, links: 3,
        recentlyClickedLinks: [0, 1]))
    #expect(burst.machine && burst.signals == ["links-clicked-together:3"])
    #expect(
      !EngagementSignals(
        Hit(kind: .click, userAgent: browser, remoteAddress: "198.51.100.1", method: "GET", secondsAfterSend: 900, link: 1, links: 5)
      ).machine)
  }

  @Test func opensAndClicksShowInAnalyticsAndAMachineOpenIsNoOpen() async throws {
    try await MailTests().withDelivery(secrets: MailTests.secrets) { delivery, database, sink, deliveryPort, url in
      _ = try await delivery.putProvider(DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink))
      var settings = CampaignSettings()
      settings.publicURL = Self.publicURL
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
            let relay = OutboxRelay(
              client: database, sink: sinkClient, links: UnsubscribeLinks(publicURL: Self.publicURL, secrets: MailTests.secrets),
              tracking: Self.tracking, logger: Logger(label: "test.relay"))
            let feed = DeliveryFeedConsumer(client: database, source: sinkClient, logger: Logger(label: "test.feed"))
            try await self.run(Campaign(wrapping: client), delivery: delivery, relay: relay, feed: feed, sink: sink)
          }
        }
      }
    }
  }

  func run(_ campaign: Campaign, delivery: MailTests.Delivery, relay: OutboxRelay, feed: DeliveryFeedConsumer, sink: SMTPSink)
    async throws
  {
    let (list, ada) = try await UnsubscribeLinkTests.newsListWithAda(campaign)
    let template = try await campaign.createTemplate(
      .with {
        $0.name = "news"
        $0.channel = "email"
        $0.subject = "News"
        $0.body = """
          <p>New: <a href="https://shop.example/new?a=1&amp;b=2">the shop</a> and <a href="https://blog.example/">the blog</a>.</p>
          <p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>
          """
        $0.variables = [.with { $0.name = "unsubscribe_url" }]
      })
    // Tracking is for e-mail: an SMS campaign asking for it is refused naming the field.
    do {
      _ = try await campaign.createCampaign(
        .with {
          $0.name = "texts"
          $0.channel = "sms"
          $0.listID = list.id
          $0.templateID = template.id
          $0.tracking.clicks = true
        })
      Issue.record("an SMS campaign with click tracking was created")
    } catch let error as RPCError {
      #expect(error.code == .invalidArgument && error.field == "tracking.clicks", "\(error)")
    }
    let created = try await campaign.createCampaign(
      .with {
        $0.name = "tracked"
        $0.channel = "email"
        $0.listID = list.id
        $0.templateID = template.id
        $0.tracking = .with {
          $0.opens = true
          $0.clicks = true
        }
      })
    #expect(created.tracking.opens && created.tracking.clicks)
    _ = try await campaign.sendCampaign(.with { $0.id = created.id })
    try await relay.drain()
    try await eventually("the tracked e-mail at the SMTP server") { !sink.messages.isEmpty }
    let html = try #require(sink.messages.first?.body)
    let links = LinkTracking.links(in: html).map(\.url)
    let clicks = links.filter { $0.hasPrefix("\(Self.publicURL)/t/c/") }.map { String($0.split(separator: "/").last!) }
    #expect(clicks.count == 2 && links.last?.hasPrefix("\(Self.publicURL)/u/") == true, "\(links)")
    let pixelStart = try #require(html.range(of: "<img src=\"\(Self.publicURL)/t/o/"))
    let pixel = String(html[pixelStart.upperBound...].prefix { $0 != "\"" })
    try await eventually("the message marked sent") {
      try await delivery.listMessages(.with { $0.campaignID = created.id }).messages.first?.status == "sent"
    }

    func hit(_ token: String, _ kind: String, agent: String, address: String = "203.0.113.7", method: String = "GET")
      async throws -> Herald_Delivery_V1_RecordTrackingHitResponse
    {
      try await delivery.recordTrackingHit(
        .with {
          $0.token = token
          $0.kind = kind
          $0.userAgent = agent
          $0.remoteAddress = address
          $0.method = method
        })
    }
    let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
    // Apple's proxy fetches the pixel (a machine); the person opens and clicks the shop link.
    let prefetch = try await hit(pixel, "open", agent: "Mozilla/5.0", address: "17.58.1.2")
    #expect(prefetch.recorded && prefetch.machine && prefetch.signals.contains("apple-mail-privacy-protection"))
    let open = try await hit(pixel, "open", agent: browser)
    #expect(open.recorded && !open.machine)
    let click = try await hit(clicks[0], "click", agent: browser)
    #expect(click.recorded && !click.machine && click.targetURL == "https://shop.example/new?a=1&b=2")
    // A scanner follows both links at once with HEAD.
    for token in clicks {
      let scan = try await hit(token, "click", agent: browser, method: "HEAD")
      #expect(scan.recorded && scan.machine && scan.signals.contains("head-request"))
    }
    // Bad input names the field; a genuine token of a campaign that sent nothing to this person
    // is recorded nowhere, but a click still goes where it was signed to.
    for (token, kind, message) in [
      (pixel, "click", "token is a tracking link of kind open, not click"),
      (String(pixel.dropLast(2)) + "xx", "open", "token is not a genuine tracking link"),
      ("v1.k1.nonsense.x", "click", "token is not a genuine tracking link"),
    ] {
      do {
        _ = try await hit(token, kind, agent: browser)
        Issue.record("\(token) was taken as a \(kind)")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument && error.field == "token" && error.message == message)
      }
    }
    let signers = try #require(Self.tracking.signers())
    let otherCampaign = TrackingToken(
      kind: .click, campaign: UUID(), subscriber: UUID(uuidString: ada.id)!, link: 0, links: 1, url: "https://blog.example/"
    ).sign(with: signers.click)
    let stray = try await hit(String(otherCampaign.split(separator: "/").last!), "click", agent: browser)
    #expect(!stray.recorded && stray.targetURL == "https://blog.example/")

    // The events, with their signals, in the message's history and in analytics.
    let message = try await delivery.getMessage(.with { $0.id = click.messageID })
    let engagement = message.events.filter { $0.status == "opened" || $0.status == "clicked" }
    #expect(engagement.map(\.status) == ["opened", "opened", "clicked", "clicked", "clicked"])
    #expect(engagement.map(\.machine) == [true, false, false, true, true])
    #expect(engagement[0].signals.contains("apple-mail-privacy-protection"))
    try await eventually("the feed has taken in the hits") {
      _ = try await feed.pollOnce()
      let totals = try await campaign.getCampaignAnalytics(.with { $0.campaignID = created.id }).totals
      return totals.machineClicked == 2
    }
    let totals = try await campaign.getCampaignAnalytics(.with { $0.campaignID = created.id }).totals
    #expect(totals.opened == 1 && totals.machineOpened == 1 && totals.clicked == 1 && totals.machineClicked == 2)
    let scores = try await campaign.listEngagement(.init()).subscribers
    let adaScore = try #require(scores.first { $0.subscriberID == ada.id })
    #expect(adaScore.opened == 1 && adaScore.clicked == 1)
  }
}
