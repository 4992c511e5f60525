import Foundation
import HeraldCore

/// The sending-domain guard (SPEC §10): every SMTP provider's From domain is judged over a
/// sliding window (`HERALD_DELIVERY_GUARD_WINDOW`, 24 h) with the campaign guard's thresholds: a
/// complaint rate above 0.3 % or a hard-bounce rate above 5 %, once 500 were sent, holds the
/// domain. A held domain's providers send nothing (their channel's messages wait in the queue,
/// or go through a provider of another domain) until an operator releases it
/// (`ReleaseSendingDomain`); from then on only what it sends after the release is judged.
/// Verification reports a held domain (`data.sending_domain_held`) and alerts.
package struct DomainGuard: Sendable {
  let store: DeliveryStore
  let thresholds: DeliverabilityThresholds
  let window: Duration

  package init(store: DeliveryStore, thresholds: DeliverabilityThresholds, window: Duration) {
    self.store = store
    self.thresholds = thresholds
    self.window = window
  }

  /// What one judgment found.
  package struct Verdict: Sendable {
    /// The domains it held now, with the reason.
    package var held: [(domain: String, reason: String)] = []
    /// Whether no domain had a hard bounce or complaint in its window: until one comes in,
    /// nothing can pass a threshold.
    package var clean = true
  }

  /// Judges each sending domain of `providers` at `now` and holds those over a threshold. With
  /// `cleanSince` (the time of a clean verdict), nothing is read but whether a hard bounce or
  /// complaint came in since (a few pages of the BRIN index instead of the window's events),
  /// looked for from 5 minutes before it, as an event's time is when its transaction began and
  /// the database's clock is not this process's.
  package func judge(_ providers: [ProviderConfig], now: Date = Date(), cleanSince: Date? = nil) async throws -> Verdict {
    var verdict = Verdict()
    var domainOf: [String: String] = [:]
    for provider in providers { if let domain = provider.sendingDomain { domainOf[provider.name] = domain } }
    guard !domainOf.isEmpty else { return verdict }
    if let cleanSince, try await !store.badNewsArrived(since: cleanSince.addingTimeInterval(-300)) { return verdict }
    let windowStart = now.addingTimeInterval(-Double(window.components.seconds))
    let holds = Dictionary(uniqueKeysWithValues: try await store.domainHolds().map { ($0.domain, $0) })
    // Each domain from the window's start, or from its release when that came later; one read of
    // the ledger per distinct start (nearly always one).
    var since: [String: Date] = [:]
    for domain in Set(domainOf.values) where holds[domain].map({ $0.releasedAt != nil }) ?? true {
      since[domain] = max(windowStart, holds[domain]?.releasedAt ?? windowStart)
    }
    var totals: [String: ProviderOutcomes] = [:]
    for start in Set(since.values) {
      let outcomes = try await store.providerOutcomes(since: start)
      for (provider, counts) in outcomes {
        guard let domain = domainOf[provider], since[domain] == start else { continue }
        totals[domain] = (totals[domain] ?? ProviderOutcomes()) + counts
      }
    }
    for (domain, counts) in totals.sorted(by: { $0.key < $1.key }) {
      if counts.complained + counts.bounced > 0 { verdict.clean = false }
      guard let reason = thresholds.breach(sent: counts.sent, complained: counts.complained, hardBounced: counts.bounced) else {
        continue
      }
      let text = "the deliverability guard held \(domain): \(reason) over the last \(Self.hours(window))"
      if try await store.holdDomain(domain, reason: text) { verdict.held.append((domain, text)) }
    }
    return verdict
  }

  static func hours(_ window: Duration) -> String {
    let seconds = window.components.seconds
    return seconds % 3600 == 0 ? "\(seconds / 3600) h" : "\(seconds) s"
  }
}
