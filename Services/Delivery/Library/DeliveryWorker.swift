import Foundation
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import Metrics
import ServiceLifecycle

/// One delivery loop: claims a batch, sends each message through the channel's providers in
/// priority order (skipping open breakers, failing over on temporary errors), and settles the
/// batch in one statement. Several loops and replicas share the queue safely: a message is
/// leased by one claim at a time and settled only under that lease.
package struct DeliveryWorker: Sendable {
  let store: DeliveryStore
  let providers: ProviderRegistry
  let throttle: any SendThrottle
  let settings: DeliverySettings
  let logger: Logger

  package init(
    store: DeliveryStore, providers: ProviderRegistry, throttle: any SendThrottle = Unthrottled(),
    settings: DeliverySettings, logger: Logger
  ) {
    self.store = store
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
        logger.error("delivery batch failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(1))
      }
    }
  }

  /// The housekeeping loop of a process (one per process): every `refreshInterval` it keeps this
  /// replica's providers in step with the table and takes back the leases of workers that died;
  /// at the end it closes the providers' connections.
  package func runHousekeeping() async {
    var judged = ContinuousClock.now
    // When the domains were last found clean (no hard bounce or complaint in any window): until
    // one comes in, they need not be judged again.
    var cleanSince: Date?
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      await BackgroundWorker.pause(settings.refreshInterval)
      do {
        if ContinuousClock.now - judged >= settings.guardInterval {
          judged = .now
          let now = Date()
          let clean = try await judgeSendingDomains(now: now, cleanSince: cleanSince)
          cleanSince = clean ? (cleanSince ?? now) : nil
        }
        try await providers.refresh()
        try await reclaimExpiredLeases()
      } catch {
        logger.error("provider reload, lease reclaim or domain guard failed", metadata: ["error": "\(error.logDescription)"])
      }
    }
    await providers.shutdown()
  }

  /// Holds the sending domains whose complaint or hard-bounce rate passed the guard's threshold
  /// (`DomainGuard`); the registry drops their providers at its next refresh.
  /// Returns whether the domains were clean (see `DomainGuard.Verdict`).
  @discardableResult
  package func judgeSendingDomains(now: Date = Date(), cleanSince: Date? = nil) async throws -> Bool {
    let guarding = DomainGuard(store: store, thresholds: settings.domainGuard, window: settings.guardWindow)
    let verdict = try await guarding.judge(providers.all.map(\.config), now: now, cleanSince: cleanSince)
    for (domain, reason) in verdict.held {
      logger.critical("sending domain held", metadata: ["domain": "\(domain)", "reason": "\(reason)"])
      Counter(label: "herald_delivery_guard_domains_held_total").increment()
    }
    return verdict.clean
  }

  /// Takes back the messages whose worker died mid-send (one caller per process suffices): those
  /// it never handed to a provider go back to the queue; those it may have sent are resent or
  /// left `unknown` (see `DeliveryStore.reclaimExpiredLeases`).
  package func reclaimExpiredLeases() async throws {
    let reclaimed = try await store.reclaimExpiredLeases(resendAll: settings.resendAmbiguous)
    if reclaimed.total > 0 {
      logger.warning(
        "messages whose worker stopped mid-batch were taken back (lease expired)",
        metadata: [
          "never_sent_requeued": "\(reclaimed.requeued)", "maybe_sent_resent": "\(reclaimed.resent)",
          "maybe_sent_unknown": "\(reclaimed.unknown)",
        ])
    }
  }

  /// Claims, sends and settles one batch; returns how many messages it claimed.
  @discardableResult
  package func runBatch() async throws -> Int {
    let token = UUID()
    let claimed = try await store.claim(
      limit: settings.batchSize, lease: settings.lease, token: token, timeToLive: settings.timeToLive,
      channels: providers.channels)
    var sending = claimed.filter { $0.status == "sending" }
    guard !sending.isEmpty else { return claimed.count }

    // Spend: reserve each campaign's messages at the cost of the provider they will try first,
    // in one locked decision per campaign. Those that do not fit wait while other sends of the
    // campaign are in flight (their failures give budget back) and fail once none are.
    var settlements: [Settlement] = []
    var toSend: [Send] = []
    // WhatsApp free text only inside the 24-hour customer-service window, as it is at the send,
    // when a Cloud API provider may send it (Herald then takes in the messages that open the
    // window; with gateways of other kinds only, Herald does not see them).
    let cloudAPI = providers.candidates(for: "whatsapp").contains { entry in
      if case .whatsapp = entry.config.kind { return true }
      return false
    }
    let freeText = cloudAPI ? sending.filter { $0.message.channel == "whatsapp" && $0.message.payload?.whatsapp == nil } : []
    if !freeText.isEmpty {
      let lastInbound = try await store.lastWhatsAppInbound(from: Array(Set(freeText.map(\.message.recipient))))
      let closed = Set(
        freeText.filter { message in
          guard let last = lastInbound[message.message.recipient] else { return true }
          return last < Date().addingTimeInterval(-Self.customerServiceWindow)
        }.map(\.message.id))
      for message in freeText where closed.contains(message.message.id) {
        let last = lastInbound[message.message.recipient].map { "last wrote at \($0.formatted(.iso8601))" } ?? "never wrote"
        settlements.append(
          Settlement(
            id: message.message.id, outcome: .failed,
            detail:
              "outside WhatsApp's 24-hour customer-service window: \(message.message.recipient) \(last); free text may only answer a message of the last 24 hours, send an approved template instead"
          ))
      }
      sending.removeAll { closed.contains($0.message.id) }
    }
    // One view of the providers for the whole batch: what is reserved is what is tried.
    let routes = Dictionary(
      uniqueKeysWithValues: Set(sending.map { ProviderConfig.route(of: $0.message) }).map { ($0, providers.candidates(for: $0)) })
    var byCampaign: [CampaignCost: [ClaimedMessage]] = [:]
    for message in sending {
      guard let campaign = message.message.campaignID else {
        toSend.append(Send(message: message, reserved: false))
        continue
      }
      let cost = routes[ProviderConfig.route(of: message.message)]?.first?.config.costCents ?? 0
      byCampaign[CampaignCost(campaign: campaign, cost: cost), default: []].append(message)
    }
    for (key, messages) in byCampaign.sorted(by: { $0.key < $1.key }) {
      let (granted, othersInFlight) = try await store.reserveSpend(
        campaign: key.campaign, costCents: key.cost, messages: messages.map(\.message.id))
      for (index, message) in messages.enumerated() {
        if index < granted {
          toSend.append(Send(message: message, reserved: key.cost > 0))
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

    // Rate limits: one call decides the batch, about the provider each message tries first when
    // its breaker is closed (a send taken from a limit is not given back, so a provider that is
    // failing, or a failover provider, is asked about only when a send gets to it).
    var asked: [Int] = []
    var queries: [ThrottleQuery] = []
    for (index, send) in toSend.enumerated() {
      guard let entry = routes[ProviderConfig.route(of: send.message.message)]?.first, entry.breaker.isClosed else { continue }
      asked.append(index)
      queries.append(
        ThrottleQuery(
          provider: entry.config.name, sendingIdentity: entry.config.sendingIdentity,
          recipientDomain: send.message.message.recipientDomain))
    }
    for (index, wait) in zip(asked, await throttle.delays(queries)) { toSend[index].firstWait = .some(wait) }
    try await sendAndSettle(toSend, settled: settlements, routes: routes, token: token)
    return claimed.count
  }

  /// Sends `toSend`, at most `concurrency` at a time, and settles the whole batch (`settled`:
  /// what was decided before sending). Sends begin in groups: one statement per group settles
  /// the sends that ended since the previous one and records the group in the send journal
  /// before any of it is handed to a provider; a group begins once every slot is free. So the
  /// journal names, besides settled messages, only sends that are in flight or
  /// ended unsettled (together at most `concurrency`): after a crash, a leased message it does
  /// not name goes back to the queue as if never claimed (`DeliveryStore.reclaimExpiredLeases`).
  /// When a statement fails, no more sends begin; the rest waits (deferred), and the batch's
  /// last statement settles what is left, or throws.
  func sendAndSettle(
    _ toSend: [Send], settled: [Settlement], routes: [String: [ProviderRegistry.Entry]], token: UUID
  ) async throws {
    // Whether every provider of a channel drops or allows a second copy: the same for the batch.
    let resendableChannels = Set(routes.filter { $0.value.allSatisfy(\.config.resendsUnconfirmed) }.keys)
    let failure: (any Error)? = await withTaskGroup(of: Settlement.self) { group in
      var unsettled = settled
      var pending = toSend[...]
      var running = 0
      var failure: (any Error)?
      while true {
        // A group begins once every slot is free (or all that is left fits): one statement per
        // `concurrency` sends. Measured against half the slots (DeliveryThroughput), this made
        // 4,300-4,700 messages/s end to end instead of 3,000-3,500: each statement costs
        // PostgreSQL more than the wait for the slowest send of a group.
        let free = settings.concurrency - running
        let starting = failure == nil && free >= min(settings.concurrency, pending.count) ? pending.prefix(free) : []
        pending = pending.dropFirst(starting.count)
        let last = running == 0 && pending.isEmpty && starting.isEmpty
        // What ended is settled with the next group, or by the batch's last statement.
        if last || !starting.isEmpty {
          let beginning = starting.map(\.message.message.id)
          let resendable = starting.filter { resendableChannels.contains(ProviderConfig.route(of: $0.message.message)) }
            .map(\.message.message.id)
          do {
            let (written, begun) = try await store.settle(
              unsettled, token: token, beginning: beginning, resendable: resendable, lastOfBatch: last)
            Self.count(unsettled.filter { written.contains($0.id) })
            unsettled = []
            // A message whose lease ran out (this batch took longer) is not sent here; a reclaim
            // puts it back in the queue.
            if begun.count < starting.count {
              logger.warning(
                "the batch's lease ran out before some sends began; they go back to the queue",
                metadata: ["messages": "\(starting.count - begun.count)"])
            }
            for send in starting where begun.contains(send.message.message.id) {
              group.addTask { await deliver(send, candidates: routes[ProviderConfig.route(of: send.message.message)] ?? []) }
              running += 1
            }
          } catch {
            if last { return error }
            logger.error(
              "could not settle sends or record those about to begin; the rest of the batch waits",
              metadata: ["error": "\(error.logDescription)"])
            failure = error
            unsettled += (starting + pending).map { item in
              Settlement(
                id: item.message.message.id, outcome: .retry(delay: .seconds(1), countsAsAttempt: false, eventStatus: "deferred"),
                detail: "not sent: the batch could not record its sends (\(error.databaseMessage))")
            }
            pending = []
            continue
          }
        }
        if last { return nil }
        if let done = await group.next() {
          running -= 1
          unsettled.append(done)
        }
      }
    }
    if let failure { throw failure }
  }

  /// `herald_delivery_sends_total{provider, outcome}`: the settled sends, by the provider the
  /// outcome is about ("none" when no provider was tried) and sent, failed, bounced, retried,
  /// deferred, unknown or dead.
  static func count(_ settled: [Settlement]) {
    var counts: [SendCount: Int] = [:]
    for settlement in settled {
      counts[SendCount(provider: settlement.provider ?? "none", outcome: outcome(settlement.outcome)), default: 0] += 1
    }
    for (key, count) in counts {
      Counter(label: "herald_delivery_sends_total", dimensions: [("provider", key.provider), ("outcome", key.outcome)])
        .increment(by: count)
    }
  }

  struct SendCount: Hashable {
    var provider: String
    var outcome: String
  }

  static func outcome(_ outcome: Settlement.Outcome) -> String {
    switch outcome {
    case .sent: "sent"
    case .failed: "failed"
    case .bounced: "bounced"
    case .dead: "dead"
    case .unknown: "unknown"
    case .retry(_, let countsAsAttempt, _): countsAsAttempt ? "retried" : "deferred"
    }
  }

  /// Records how long a provider's send took (`herald_delivery_send_duration_seconds{provider}`)
  /// and returns it.
  static func timed(_ provider: String, since started: ContinuousClock.Instant) -> Duration {
    let elapsed = ContinuousClock.now - started
    Timer(label: "herald_delivery_send_duration_seconds", dimensions: [("provider", provider)]).record(duration: elapsed)
    return elapsed
  }

  struct CampaignCost: Hashable, Comparable {
    var campaign: UUID
    var cost: Int64
    static func < (a: Self, b: Self) -> Bool { (a.campaign.uuidString, a.cost) < (b.campaign.uuidString, b.cost) }
  }

  /// A message about to be sent, with what the batch decided for it.
  struct Send: Sendable {
    var message: ClaimedMessage
    /// Whether the batch reserved the first provider's cost for it.
    var reserved: Bool
    /// The rate-limit answer about its first provider, asked for the whole batch at once: nil
    /// when none was asked (no provider, or its breaker was not closed), `.some(nil)` to go, else
    /// the wait.
    var firstWait: Duration?? = nil
  }

  /// Sends one message and says how to settle it. The settlement turns the cost the batch
  /// reserved for it into spend or gives it back.
  func deliver(_ send: Send, candidates: [ProviderRegistry.Entry]) async -> Settlement {
    let claimed = send.message
    let message = claimed.message
    var held: Int64 = send.reserved ? candidates.first?.config.costCents ?? 0 : 0
    guard !candidates.isEmpty else {
      // Its provider was removed after the claim: it waits, like the rest of its channel.
      return Settlement(
        id: message.id, outcome: .retry(delay: settings.refreshInterval, countsAsAttempt: false, eventStatus: "deferred"),
        detail: "no enabled provider is configured for the \(message.channel) channel"
          + (message.payload?.push.map { " and platform \($0.platform)" } ?? ""))
    }
    // Each kind of outcome with the provider it is about (the sends metric's label).
    var lastFailure: (error: SendFailure, provider: String)?
    var deferral: Duration?
    var deferredBy: String?
    var stoppedAt: String?
    var skippedOpen: [String] = []
    func deferred(_ wait: Duration, by name: String) {
      if deferral.map({ wait < $0 }) ?? true { deferredBy = name }
      deferral = min(deferral ?? wait, wait)
    }
    for (position, entry) in candidates.enumerated() {
      let name = entry.config.name
      guard entry.breaker.admit() else {
        skippedOpen.append(name)
        continue
      }
      let wait: Duration?
      if position == 0, let decided = send.firstWait {
        wait = decided
      } else {
        wait = await throttle.delay(provider: name, sendingIdentity: entry.config.sendingIdentity, recipientDomain: message.recipientDomain)
      }
      if let wait {
        entry.breaker.release()
        deferred(wait, by: name)
        continue
      }
      var warmupHeld = false
      if let identity = entry.config.sendingIdentity {
        do {
          warmupHeld = try await store.reserveWarmup(identity: identity, count: 1) == 1
        } catch {
          entry.breaker.release()
          return retry(claimed, "could not check the warm-up cap of \(identity): \(error.databaseMessage)", provider: name)
        }
        if !warmupHeld {
          entry.breaker.release()
          deferred(Self.untilTomorrow(), by: name)
          continue
        }
      }
      if let campaign = message.campaignID, entry.config.costCents > held {
        // A dearer provider than the one reserved for: reserve the difference (a campaign
        // without a cap grants it at once).
        let extra = entry.config.costCents - held
        let granted = (try? await store.reserveSpend(campaign: campaign, costCents: extra, messages: [message.id]))?.granted ?? 0
        guard granted == 1 else {
          entry.breaker.release()
          if let identity = entry.config.sendingIdentity { try? await store.releaseWarmup(identity: identity, count: 1) }
          stoppedAt = name
          continue
        }
        held += extra
      }

      let started = ContinuousClock.now
      do {
        let providerID = try await entry.provider.send(message)
        entry.breaker.record(success: true, latency: Self.timed(name, since: started))
        return Settlement(
          id: message.id, outcome: .sent(provider: name, providerMessageID: providerID, costCents: entry.config.costCents),
          detail: "via \(name)")
      } catch {
        entry.breaker.record(
          success: !error.countsAgainstProvider, latency: Self.timed(name, since: started),
          error: error.countsAgainstProvider ? error.description : nil)
        if case .ambiguous = error {
          // It may have been sent (and charged): keep the reservation and the warm-up slot.
          if settings.resendAmbiguous || entry.config.resendsUnconfirmed {
            var settlement = retry(
              claimed, "\(name): \(error.description) (sent again: \(name) may resend unconfirmed sends)", provider: name)
            settlement.charged = true
            return settlement
          }
          return Settlement(id: message.id, outcome: .unknown(provider: name), detail: "\(name): \(error.description)")
        }
        if let identity = entry.config.sendingIdentity { try? await store.releaseWarmup(identity: identity, count: 1) }
        switch error {
        case .permanent:
          return Settlement(id: message.id, outcome: .failed, detail: "\(name): \(error.description)", provider: name)
        case .recipientRejected:
          return Settlement(id: message.id, outcome: .bounced, detail: "\(name): \(error.description)", provider: name)
        case .temporary(_, let retryAfter):
          lastFailure = (error, name)
          if let retryAfter { deferral = max(deferral ?? retryAfter, retryAfter) }
          continue
        case .ambiguous:
          continue
        }
      }
    }
    if let lastFailure {
      return retryOrDead(claimed, lastFailure.error.description, hint: deferral, provider: lastFailure.provider)
    }
    if let stoppedAt {
      return Settlement(
        id: message.id, outcome: .failed, detail: "spend cap reached: no budget left for the next provider", provider: stoppedAt)
    }
    if let deferral {
      return Settlement(
        id: message.id, outcome: .retry(delay: deferral, countsAsAttempt: false, eventStatus: "deferred"),
        detail: "delayed \(deferral) by a rate limit or warm-up cap", provider: deferredBy)
    }
    return Settlement(
      id: message.id, outcome: .retry(delay: settings.breaker.openFor, countsAsAttempt: false, eventStatus: "deferred"),
      detail: "every \(message.channel) provider's breaker is open (\(skippedOpen.joined(separator: ", ")))")
  }

  func retry(_ claimed: ClaimedMessage, _ detail: String, provider: String?) -> Settlement {
    Settlement(
      id: claimed.message.id,
      outcome: .retry(delay: settings.backoff(afterAttempt: claimed.attempts), countsAsAttempt: true, eventStatus: "retrying"),
      detail: detail, provider: provider)
  }

  func retryOrDead(_ claimed: ClaimedMessage, _ detail: String, hint: Duration?, provider: String?) -> Settlement {
    guard claimed.attempts < settings.maxAttempts else {
      return Settlement(
        id: claimed.message.id, outcome: .dead, detail: "dead-lettered after \(claimed.attempts) attempts: \(detail)",
        provider: provider)
    }
    let delay = max(settings.backoff(afterAttempt: claimed.attempts), hint ?? .zero)
    return Settlement(
      id: claimed.message.id, outcome: .retry(delay: delay, countsAsAttempt: true, eventStatus: "retrying"), detail: detail,
      provider: provider)
  }

  /// WhatsApp's customer-service window: free text may answer a person's message for 24 hours.
  static let customerServiceWindow: TimeInterval = 24 * 3600

  static func untilTomorrow(now: Date = Date()) -> Duration {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let tomorrow = calendar.startOfDay(for: now).addingTimeInterval(86_400)
    return .seconds(max(1, Int64(tomorrow.timeIntervalSince(now)) + 1))
  }
}
