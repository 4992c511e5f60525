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
}
