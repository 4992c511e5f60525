import Foundation
import GRPCCore
import HeraldCore
import HeraldDelivery
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Testing

/// The deliverability report (SPEC §10): per sending domain and provider, what the mail met, the
/// domain's DKIM keys, and how it stands with the bulk-sender rules.
@Suite(.timeLimit(.minutes(5))) struct DeliverabilityReportTests {
  @Test func theReportCountsEachDomainsMailAndNamesWhatTheBulkSenderRulesMiss() async throws {
    try await MailTests().withDelivery(secrets: MailTests.secrets) { delivery, database, sink in
      var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
      provider.webhookSecret = "whsec"
      _ = try await delivery.putProvider(provider)
      _ = try await delivery.createDkimKey(MailTests.keyRequest("herald.test", "ed1", .ed25519Sha256))
      _ = try await delivery.createDkimKey(MailTests.keyRequest("other.test", "s1", .rsaSha256))
      let campaign = UUID().lowercasedString
      // Ten campaign e-mails with their unsubscribe link, two without, and a transactional one.
      var ids: [String] = []
      for index in 0..<13 {
        let sent = try await delivery.sendMessage(
          .with {
            $0.idempotencyKey = "report-\(index)"
            $0.channel = .email
            $0.recipient = "reader\(index)@example.com"
            $0.subject = "News"
            $0.body = "<p>News</p>"
            $0.format = "html"
            if index < 12 { $0.campaignID = campaign }
            if index < 10 { $0.listUnsubscribeURL = "https://mail.herald.test/u/v1.k1.a.b" }
          })
        ids.append(sent.messageID)
      }
      try await eventually("the thirteen messages at the SMTP server") { sink.messages.count == 13 }
      try await eventually("the thirteen messages marked sent") {
        try await delivery.listMessages(.with { $0.status = "sent" }).messages.count == 13
      }
      // The provider's webhook reports: every one delivered, one hard bounce, one soft bounce (no
      // hard bounce: not counted, not suppressed), one complaint.
      let reported =
        ids.map { #"{"type":"delivered","message_id":"\#($0)"}"# }
        + [
          #"{"type":"bounced","bounce":"hard","message_id":"\#(ids[0])","detail":"550 no such user"}"#,
          #"{"type":"complained","message_id":"\#(ids[1])"}"#,
          #"{"type":"bounced","bounce":"soft","message_id":"\#(ids[2])","detail":"452 mailbox full"}"#,
        ]
      let body = Data(#"{"events":[\#(reported.joined(separator: ","))]}"#.utf8)
      let applied = try await delivery.ingestProviderWebhook(
        .with {
          $0.provider = "smtp-main"
          $0.body = body
          $0.signature = WebhookSignature.header(secret: "whsec", timestamp: Int(Date().timeIntervalSince1970), body: body)
        })
      #expect(applied.applied == 16)
      let soft = try await delivery.getMessage(.with { $0.id = ids[2] })
      #expect(soft.message.status == "bounced" && soft.events.map(\.status).last == "soft_bounced")
      let suppressed = try await delivery.listSuppressions(.init()).suppressions.map(\.address)
      #expect(suppressed.sorted() == ["reader0@example.com", "reader1@example.com"])

      let report = try await delivery.getDeliverability(.init())
      #expect(abs(report.since.date.timeIntervalSinceNow + 30 * 86_400) < 60)
      #expect(report.domains.map(\.domain) == ["herald.test", "other.test"])
      let herald = report.domains[0]
      #expect(herald.providers == ["smtp-main"] && herald.dkimKeys.map(\.selector) == ["ed1"])
      #expect(herald.dkimKeys.first?.dnsName == "ed1._domainkey.herald.test")
      let counts = herald.counts
      #expect((counts.sent, counts.delivered, counts.bounced, counts.complained, counts.failed) == (13, 13, 1, 1, 0))
      #expect(counts.campaignSentWithoutUnsubscribe == 2)
      #expect(abs(counts.complaintRate - 1.0 / 13) < 1e-9 && abs(counts.bounceRate - 1.0 / 13) < 1e-9 && counts.deliveryRate == 1)
      let rules = Dictionary(uniqueKeysWithValues: herald.requirements.map { ($0.rule, $0) })
      #expect(rules["dkim"]?.status == "met" && rules["dkim"]?.detail == "signed with ed1 (ed25519-sha256)")
      #expect(rules["dkim_rsa"]?.status == "missing")
      #expect(rules["one_click_unsubscribe"]?.status == "missing")
      #expect(rules["one_click_unsubscribe"]?.detail == "2 campaign e-mails went out without a one-click unsubscribe link")
      #expect(rules["complaint_rate"]?.status == "missing")
      #expect(rules["complaint_rate"]?.detail.hasPrefix("complaints are 7.69 % of sent") == true)
      #expect(rules["spf"]?.status == "unknown" && rules["dmarc"]?.status == "unknown")
      // A domain with a key but no provider: nothing sent, so its complaint rate is unknown.
      let other = report.domains[1]
      #expect(other.providers.isEmpty && other.counts.sent == 0)
      #expect(other.requirements.first { $0.rule == "complaint_rate" }?.status == "unknown")
      #expect(other.requirements.first { $0.rule == "dkim_rsa" }?.status == "met")
      #expect(report.providers.map(\.provider) == ["smtp-main"] && report.providers[0].domain == "herald.test")
      #expect(report.providers[0].counts == counts)

      // The transactional message's events moved two days back: a one-day window leaves them out.
      try await database.query(
        """
        UPDATE delivery.delivery_events SET occurred_at = occurred_at - interval '2 days'
        WHERE message_id = \(UUID(uuidString: ids[12])!)
        """, logger: Logger(label: "test"))
      let lastDay = try await delivery.getDeliverability(.with { $0.days = 1 }).domains[0].counts
      #expect(lastDay.sent == 12 && lastDay.delivered == 12)
      #expect(try await delivery.getDeliverability(.with { $0.days = 3 }).domains[0].counts.sent == 13)
      // A window out of range names the field.
      do {
        _ = try await delivery.getDeliverability(.with { $0.days = 91 })
        Issue.record("a window of 91 days was taken")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument && error.field == "days")
      }
    }
  }

  /// The sending-domain guard: once a domain's complaint rate over the window passes the
  /// threshold, its provider sends nothing (its mail waits in the queue) and the report says why;
  /// released, the mail goes out, and only what is sent from then on is judged.
  @Test func aSendingDomainPastTheComplaintThresholdIsHeldUntilReleased() async throws {
    var settings = DeliveryWorkerTests.settings()
    settings.domainGuard.minimumSent = 5
    settings.guardInterval = .milliseconds(100)
    try await withSMTPSink { sink in
      try await withHTTPSink { smsPort, smsSink in
        try await DeliveryWorkerTests().withDelivery(settings) { delivery, database in
          var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
          provider.webhookSecret = "whsec"
          _ = try await delivery.putProvider(provider)
          _ = try await delivery.putProvider(DeliveryWorkerTests.httpProvider("sms-main", port: smsPort, priority: 0))
          var ids: [String] = []
          for index in 0..<10 {
            ids.append(
              try await delivery.sendMessage(DeliveryWorkerTests.email("guard-\(index)", to: "reader\(index)@example.com")).messageID)
          }
          try await eventually("the ten messages sent") {
            try await delivery.listMessages(.with { $0.status = "sent" }).messages.count == 10
          }
          let body = Data(#"{"events":[{"type":"complained","message_id":"\#(ids[0])"}]}"#.utf8)
          _ = try await delivery.ingestProviderWebhook(
            .with {
              $0.provider = "smtp-main"
              $0.body = body
              $0.signature = WebhookSignature.header(secret: "whsec", timestamp: Int(Date().timeIntervalSince1970), body: body)
            })
          try await eventually("the domain held") {
            try await delivery.getDeliverability(.init()).domains.first { $0.domain == "herald.test" }?.hasHold == true
          }
          let hold = try #require(try await delivery.getDeliverability(.init()).domains.first { $0.domain == "herald.test" }?.hold)
          #expect(
            hold.reason
              == "the deliverability guard held herald.test: complaint rate 10.00 % (1 of 10 sent) is above 0.30 % over the last 24 h")
          // Put again (which reloads this replica's providers at once): its mail now waits. An SMS
          // queued after it goes out, so the worker claimed past it.
          _ = try await delivery.putProvider(provider)
          _ = try await delivery.sendMessage(DeliveryWorkerTests.email("after-hold", to: "late@example.com"))
          _ = try await delivery.sendMessage(DeliveryWorkerTests.sms("sms-1", to: "+4915100000001"))
          try await eventually("the SMS sent") { smsSink.count == 1 }
          let waiting = try await delivery.listMessages(.with { $0.status = "queued" }).messages.map(\.idempotencyKey)
          #expect(waiting == ["after-hold"] && !sink.messages.contains { $0.key == "after-hold" })

          // Bad input names the field; a domain not held is a NOT_FOUND.
          for (domain, code) in [("not a domain", RPCError.Code.invalidArgument), ("other.test", .notFound)] {
            let error = await #expect(throws: RPCError.self) { _ = try await delivery.releaseSendingDomain(.with { $0.domain = domain }) }
            #expect(error?.code == code && error?.field == "domain")
          }
          _ = try await delivery.releaseSendingDomain(.with { $0.domain = "Herald.TEST" })
          try await eventually("the held mail sent") { sink.messages.contains { $0.key == "after-hold" } }
          #expect(try await delivery.getDeliverability(.init()).domains.first { $0.domain == "herald.test" }?.hasHold == false)
          // The complaint before the release is not judged again.
          let store = DeliveryStore(client: database, logger: Logger(label: "test"))
          let judged = try await DomainGuard(store: store, thresholds: settings.domainGuard, window: settings.guardWindow)
            .judge(try await store.providers(opening: testSecrets))
          #expect(judged.held.isEmpty && judged.clean)
        }
      }
    }
  }
}
