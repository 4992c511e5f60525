import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// The deliverability report (`GET /v1/deliverability`, SPEC §10).
extension DeliveryService {
  package func getDeliverability(
    request: Herald_Delivery_V1_GetDeliverabilityRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_DeliverabilityReport {
    guard (0...90).contains(request.days) else {
      throw RPCError.field("days", .invalidArgument, "days must be from 1 to 90 (0 means 30); it is \(request.days)")
    }
    let since = Date().addingTimeInterval(-Double(request.days == 0 ? 30 : request.days) * 86_400)
    let providers = self.providers.all.map(\.config)
    let outcomes = try await store.providerOutcomes(since: since)
    let keys = try await store.dkimKeys()
    let holds = Dictionary(uniqueKeysWithValues: try await store.heldDomains().map { ($0.domain, $0) })

    var report = Herald_Delivery_V1_DeliverabilityReport()
    report.since = Google_Protobuf_Timestamp(date: since)
    var domains: [String: (providers: [String], outcomes: ProviderOutcomes)] = [:]
    // Every domain with a key, sending or not; then the From domain of each SMTP provider.
    for key in keys where domains[key.domain] == nil { domains[key.domain] = ([], ProviderOutcomes()) }
    for domain in holds.keys where domains[domain] == nil { domains[domain] = ([], ProviderOutcomes()) }
    for provider in providers {
      let counts = outcomes[provider.name] ?? ProviderOutcomes()
      let domain = provider.sendingDomain ?? ""
      if !domain.isEmpty {
        var entry = domains[domain] ?? ([], ProviderOutcomes())
        entry.providers.append(provider.name)
        entry.outcomes = entry.outcomes + counts
        domains[domain] = entry
      }
      report.providers.append(
        .with {
          $0.provider = provider.name
          $0.channel = Self.channel(provider.channel)
          $0.domain = domain
          $0.counts = Self.counts(counts)
        })
    }
    report.domains = domains.keys.sorted().map { domain in
      let (names, counts) = domains[domain]!
      let domainKeys = keys.filter { $0.domain == domain }
      return .with {
        $0.domain = domain
        $0.providers = names
        $0.counts = Self.counts(counts)
        $0.dkimKeys = domainKeys.map(Self.dkimKey)
        $0.requirements = Self.requirements(domain: domain, counts: counts, keys: domainKeys)
        if let hold = holds[domain] {
          $0.hold = .with {
            $0.reason = hold.reason
            $0.heldAt = Google_Protobuf_Timestamp(date: hold.heldAt)
          }
        }
      }
    }
    return report
  }

  static func counts(_ outcomes: ProviderOutcomes) -> Herald_Delivery_V1_DeliverabilityCounts {
    func rate(_ count: Int64) -> Double { outcomes.sent == 0 ? 0 : Double(count) / Double(outcomes.sent) }
    return .with {
      $0.sent = outcomes.sent
      $0.delivered = outcomes.delivered
      $0.bounced = outcomes.bounced
      $0.complained = outcomes.complained
      $0.failed = outcomes.failed
      $0.deliveryRate = rate(outcomes.delivered)
      $0.bounceRate = rate(outcomes.bounced)
      $0.complaintRate = rate(outcomes.complained)
      $0.campaignSentWithoutUnsubscribe = outcomes.campaignWithoutUnsubscribe
    }
  }

  /// Gmail's and Yahoo's rules for bulk senders (2024): DKIM aligned with From (Gmail checks the
  /// RSA signature), one-click unsubscribe, complaints under 0.3 % (0.1 % recommended), SPF and
  /// DMARC — the last two DNS records Herald does not look up.
  static func requirements(
    domain: String, counts: ProviderOutcomes, keys: [StoredDKIMKey]
  ) -> [Herald_Delivery_V1_DeliverabilityRequirement] {
    func rule(_ name: String, _ status: String, _ detail: String) -> Herald_Delivery_V1_DeliverabilityRequirement {
      .with {
        $0.rule = name
        $0.status = status
        $0.detail = detail
      }
    }
    func percent(_ share: Double) -> String { String(format: "%.2f %%", share * 100) }
    var rules: [Herald_Delivery_V1_DeliverabilityRequirement] = []
    rules.append(
      keys.isEmpty
        ? rule(
          "dkim", "missing", "\(domain) has no DKIM key: its mail goes out unsigned; create one (POST /v1/dkim-keys) and publish its record"
        )
        : rule("dkim", "met", "signed with " + keys.map { "\($0.selector) (\($0.algorithm.rawValue))" }.joined(separator: ", ")))
    rules.append(
      keys.contains { $0.algorithm == .rsaSHA256 }
        ? rule("dkim_rsa", "met", "an rsa-sha256 signature, the one Gmail verifies")
        : rule(
          "dkim_rsa", "missing",
          "no RSA key for \(domain): Gmail verifies only rsa-sha256 signatures; add one (algorithm DKIM_ALGORITHM_RSA_SHA256)"))
    rules.append(
      counts.campaignWithoutUnsubscribe == 0
        ? rule("one_click_unsubscribe", "met", "every campaign e-mail of the window carried List-Unsubscribe with List-Unsubscribe-Post")
        : rule(
          "one_click_unsubscribe", "missing",
          "\(counts.campaignWithoutUnsubscribe) campaign e-mails went out without a one-click unsubscribe link"))
    if counts.sent == 0 {
      rules.append(rule("complaint_rate", "unknown", "nothing was sent from \(domain) in the window"))
    } else {
      let share = Double(counts.complained) / Double(counts.sent)
      rules.append(
        share >= 0.003
          ? rule(
            "complaint_rate", "missing", "complaints are \(percent(share)) of sent: at or above 0.3 %, the most Gmail and Yahoo accept")
          : share >= 0.001
            ? rule(
              "complaint_rate", "met",
              "complaints are \(percent(share)) of sent: under 0.3 %, but above the 0.1 % Gmail asks senders to stay under")
            : rule("complaint_rate", "met", "complaints are \(percent(share)) of sent, under 0.1 %"))
    }
    rules.append(
      rule(
        "spf", "unknown",
        "Herald does not look up DNS: publish an SPF record for \(domain) that names the relays its providers send through"))
    rules.append(
      rule("dmarc", "unknown", "Herald does not look up DNS: publish _dmarc.\(domain) (at least p=none) aligned with \(domain)"))
    return rules
  }
}

extension DeliveryService {
  package func releaseSendingDomain(
    request: Herald_Delivery_V1_ReleaseSendingDomainRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ReleaseSendingDomainResponse {
    let domain = try Self.dkimDomain(request.domain)
    guard try await store.releaseDomain(domain) else {
      throw RPCError.field("domain", .notFound, "the deliverability guard does not hold \(domain)")
    }
    try await providers.refresh()
    return Herald_Delivery_V1_ReleaseSendingDomainResponse()
  }
}
