import Foundation
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import ServiceLifecycle

/// Asked before each send (SPEC §3/§4): `nil` lets it go now; a duration delays the message (it is
/// never failed for it). The rate-limit service plugs in here.
package protocol SendThrottle: Sendable {
  func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration?
}

/// No rate limits configured.
package struct Unthrottled: SendThrottle {
  package init() {}
  package func delay(provider: String, sendingIdentity: String?, recipientDomain: String) async -> Duration? { nil }
}

/// One delivery loop: claims a batch, sends each message through the channel's providers in
/// priority order (skipping open breakers, failing over on temporary errors), and settles the
/// batch in one statement. Several loops and replicas share the queue safely: a message is
/// leased by one claim at a time and settled only under that lease.
package struct DeliveryWorker: Sendable {
  let queue: PostgresMessageQueue
  let providers: ProviderRegistry
  let throttle: any SendThrottle
  let settings: DeliverySettings
  let logger: Logger

  package init(
    queue: PostgresMessageQueue, providers: ProviderRegistry, throttle: any SendThrottle = Unthrottled(),
    settings: DeliverySettings, logger: Logger
  ) {
    self.queue = queue
    self.providers = providers
    self.throttle = throttle
    self.settings = settings
    self.logger = logger
  }

  package func run() async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await runBatch() == 0 { await BackgroundWorker.pause(settings.idle) }
      } catch {
        logger.error("delivery batch failed; will retry", metadata: ["error": "\(error.databaseMessage)"])
        await BackgroundWorker.pause(.seconds(1))
      }
    }
  }

  /// Returns messages whose worker died mid-send to the queue (one caller per process suffices).
  package func reclaimExpiredLeases() async throws {
    let reclaimed = try await queue.reclaimExpiredLeases(resend: settings.resendAmbiguous)
    if reclaimed > 0 {
      logger.warning(
        "messages whose worker stopped mid-send were found (lease expired)",
        metadata: ["messages": "\(reclaimed)", "resent": "\(settings.resendAmbiguous)"])
    }
  }

  /// Claims, sends and settles one batch; returns how many messages it claimed.
  @discardableResult
  package func runBatch() async throws -> Int {
    let token = UUID()
    let claimed = try await queue.claim(
      limit: settings.batchSize, lease: settings.lease, token: token, timeToLive: settings.timeToLive,
      channels: providers.channels)
    let sending = claimed.filter { $0.status == "sending" }
    guard !sending.isEmpty else { return claimed.count }

    // Spend: reserve each campaign's messages at the cost of the provider they will try first,
    // in one locked decision per campaign. Those that do not fit wait while other sends of the
    // campaign are in flight (their failures give budget back) and fail once none are.
    var settlements: [Settlement] = []
    // Each with whether its first provider's cost was reserved for it.
    var toSend: [(message: ClaimedMessage, reserved: Bool)] = []
    // One view of the providers for the whole batch: what is reserved is what is tried.
    let routes = Dictionary(uniqueKeysWithValues: Set(sending.map(\.message.channel)).map { ($0, providers.candidates(for: $0)) })
    let byCampaign = Dictionary(grouping: sending.filter { $0.message.campaignID != nil }) {
      CampaignCost(campaign: $0.message.campaignID!, cost: routes[$0.message.channel]?.first?.config.costCents ?? 0)
    }
    for message in sending where message.message.campaignID == nil { toSend.append((message, false)) }
    for (key, messages) in byCampaign.sorted(by: { $0.key < $1.key }) {
      let (granted, othersInFlight) = try await queue.reserveSpend(
        campaign: key.campaign, costCents: key.cost, messages: messages.map(\.message.id))
      for (index, message) in messages.enumerated() {
        if index < granted {
          toSend.append((message, key.cost > 0))
        } else if othersInFlight {
          settlements.append(
            Settlement(
              id: message.message.id, outcome: .retry(delay: .milliseconds(250), countsAsAttempt: false, eventStatus: "deferred"),
              detail: "waiting for the campaign's sends in flight to settle its budget"))
        } else {
          settlements.append(
            Settlement(
              id: message.message.id, outcome: .failed,
              detail: "spend cap reached: campaign \(key.campaign.lowercasedString) has no budget left for \(key.cost) ¢"))
        }
      }
    }

    settlements += await withTaskGroup(of: Settlement.self) { group in
      var results: [Settlement] = []
      var next = toSend.makeIterator()
      func startNext() -> Bool {
        guard let (message, reserved) = next.next() else { return false }
        group.addTask { await deliver(message, reserved: reserved, candidates: routes[message.message.channel] ?? []) }
        return true
      }
      var started = 0
      while started < settings.concurrency, startNext() { started += 1 }
      while let result = await group.next() {
        results.append(result)
        _ = startNext()
      }
      return results
    }
    try await queue.settle(settlements, token: token)
    return claimed.count
  }

  struct CampaignCost: Hashable, Comparable {
    var campaign: UUID
    var cost: Int64
    static func < (a: Self, b: Self) -> Bool { (a.campaign.uuidString, a.cost) < (b.campaign.uuidString, b.cost) }
  }

  /// Sends one message and says how to settle it. `reserved` tells whether the batch reserved
  /// the first provider's cost for it; the settlement turns that into spend or gives it back.
  func deliver(_ claimed: ClaimedMessage, reserved: Bool, candidates: [ProviderRegistry.Entry]) async -> Settlement {
    let message = claimed.message
    var held: Int64 = reserved ? candidates.first?.config.costCents ?? 0 : 0
    guard !candidates.isEmpty else {
      // Its provider was removed after the claim: it waits, like the rest of its channel.
      return Settlement(
        id: message.id, outcome: .retry(delay: settings.refreshInterval, countsAsAttempt: false, eventStatus: "deferred"),
        detail: "no enabled provider is configured for the \(message.channel) channel")
    }
    var lastFailure: SendFailure?
    var deferral: Duration?
    var budgetStopped = false
    var skippedOpen: [String] = []
    for entry in candidates {
      let name = entry.config.name
      guard entry.breaker.admit() else {
        skippedOpen.append(name)
        continue
      }
      if let wait = await throttle.delay(
        provider: name, sendingIdentity: entry.config.sendingIdentity, recipientDomain: message.recipientDomain)
      {
        entry.breaker.release()
        deferral = min(deferral ?? wait, wait)
        continue
      }
      var warmupHeld = false
      if let identity = entry.config.sendingIdentity {
        do {
          warmupHeld = try await queue.reserveWarmup(identity: identity, count: 1) == 1
        } catch {
          entry.breaker.release()
          return retry(claimed, "could not check the warm-up cap of \(identity): \(error.databaseMessage)")
        }
        if !warmupHeld {
          entry.breaker.release()
          deferral = min(deferral ?? Self.untilTomorrow(), Self.untilTomorrow())
          continue
        }
      }
      if let campaign = message.campaignID, entry.config.costCents > held {
        // A dearer provider than the one reserved for: reserve the difference (a campaign
        // without a cap grants it at once).
        let extra = entry.config.costCents - held
        let granted = (try? await queue.reserveSpend(campaign: campaign, costCents: extra, messages: [message.id]))?.granted ?? 0
        guard granted == 1 else {
          entry.breaker.release()
          if let identity = entry.config.sendingIdentity { try? await queue.releaseWarmup(identity: identity, count: 1) }
          budgetStopped = true
          continue
        }
        held += extra
      }

      let started = ContinuousClock.now
      do {
        let providerID = try await entry.provider.send(message)
        entry.breaker.record(success: true, latency: .now - started)
        return Settlement(
          id: message.id, outcome: .sent(provider: name, providerMessageID: providerID, costCents: entry.config.costCents),
          detail: "via \(name)")
      } catch {
        entry.breaker.record(success: !error.countsAgainstProvider, latency: .now - started, error: error.countsAgainstProvider ? error.description : nil)
        if case .ambiguous = error {
          // It may have been sent (and charged): keep the reservation and the warm-up slot.
          if settings.resendAmbiguous {
            var settlement = retry(claimed, "\(name): \(error.description) (sent again: resend of ambiguous sends is on)")
            settlement.charged = true
            return settlement
          }
          return Settlement(id: message.id, outcome: .unknown(provider: name), detail: "\(name): \(error.description)")
        }
        if let identity = entry.config.sendingIdentity { try? await queue.releaseWarmup(identity: identity, count: 1) }
        switch error {
        case .permanent:
          return Settlement(id: message.id, outcome: .failed, detail: "\(name): \(error.description)")
        case .recipientRejected:
          return Settlement(id: message.id, outcome: .bounced, detail: "\(name): \(error.description)")
        case .temporary(_, let retryAfter):
          lastFailure = error
          if let retryAfter { deferral = max(deferral ?? retryAfter, retryAfter) }
          continue
        case .ambiguous:
          continue
        }
      }
    }
    if let lastFailure {
      return retryOrDead(claimed, lastFailure.description, hint: deferral)
    }
    if budgetStopped {
      return Settlement(id: message.id, outcome: .failed, detail: "spend cap reached: no budget left for the next provider")
    }
    if let deferral {
      return Settlement(
        id: message.id, outcome: .retry(delay: deferral, countsAsAttempt: false, eventStatus: "deferred"),
        detail: "delayed \(deferral) by a rate limit or warm-up cap")
    }
    return Settlement(
      id: message.id, outcome: .retry(delay: settings.breaker.openFor, countsAsAttempt: false, eventStatus: "deferred"),
      detail: "every \(message.channel) provider's breaker is open (\(skippedOpen.joined(separator: ", ")))")
  }

  func retry(_ claimed: ClaimedMessage, _ detail: String) -> Settlement {
    Settlement(
      id: claimed.message.id,
      outcome: .retry(delay: settings.backoff(afterAttempt: claimed.attempts), countsAsAttempt: true, eventStatus: "retrying"),
      detail: detail)
  }

  func retryOrDead(_ claimed: ClaimedMessage, _ detail: String, hint: Duration?) -> Settlement {
    guard claimed.attempts < settings.maxAttempts else {
      return Settlement(
        id: claimed.message.id, outcome: .dead, detail: "dead-lettered after \(claimed.attempts) attempts: \(detail)")
    }
    let delay = max(settings.backoff(afterAttempt: claimed.attempts), hint ?? .zero)
    return Settlement(
      id: claimed.message.id, outcome: .retry(delay: delay, countsAsAttempt: true, eventStatus: "retrying"), detail: detail)
  }

  static func untilTomorrow(now: Date = Date()) -> Duration {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let tomorrow = calendar.startOfDay(for: now).addingTimeInterval(86_400)
    return .seconds(max(1, Int64(tomorrow.timeIntervalSince(now)) + 1))
  }
}
