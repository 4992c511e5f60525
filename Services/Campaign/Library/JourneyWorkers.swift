import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// How journeys run: HERALD_JOURNEY_TIME_ZONE (the zone of a wait until a weekday and time, for
/// people without a time_zone attribute), HERALD_JOURNEY_BATCH (enrolments per scheduler
/// transaction, events per trigger transaction), HERALD_JOURNEY_WORKERS (scheduler loops per
/// process) and HERALD_JOURNEY_SEGMENT_INTERVAL (how often watched segments are evaluated).
package struct JourneySettings: Sendable, Equatable {
  package var timeZone = "UTC"
  package var batchSize = 1000
  package var workers = 2
  package var segmentInterval: Duration = .seconds(300)

  package init() {}

  package static func load(_ settings: Settings) throws -> JourneySettings {
    var result = JourneySettings()
    result.timeZone = settings.string("HERALD_JOURNEY_TIME_ZONE", default: result.timeZone)
    guard TimeZone(identifier: result.timeZone) != nil else {
      throw ConfigurationError.malformed(
        variable: "HERALD_JOURNEY_TIME_ZONE", value: result.timeZone, expected: "an IANA time zone such as Europe/Paris")
    }
    result.batchSize = try settings.int("HERALD_JOURNEY_BATCH", default: result.batchSize, range: 1...5000)
    result.workers = try settings.int("HERALD_JOURNEY_WORKERS", default: result.workers, range: 0...16)
    result.segmentInterval = try settings.duration("HERALD_JOURNEY_SEGMENT_INTERVAL", default: result.segmentInterval)
    guard result.segmentInterval >= .seconds(10) else {
      throw ConfigurationError.malformed(
        variable: "HERALD_JOURNEY_SEGMENT_INTERVAL", value: "\(result.segmentInterval)", expected: "at least 10s")
    }
    return result
  }
}

/// A published version with what its steps need: the templates its sends use, its channels,
/// its step ids. Versions never change, so they are kept once loaded.
struct CompiledJourneyVersion: Sendable {
  var definition: JourneyDefinition
  var templates: [UUID: MessageTemplate]
  /// The channels its sends use (exit on unsubscribe: consent to none of them).
  var channels: Set<String>
  var stepIDs: Set<String>
}

final class JourneyVersionCache: Sendable {
  private let entries = Mutex<[JourneyVersionKey: CompiledJourneyVersion]>([:])

  /// The versions of `keys` (those that exist), from the cache or the database.
  func load(_ keys: Set<JourneyVersionKey>, store: CampaignStore, on connection: PostgresConnection) async throws
    -> [JourneyVersionKey: CompiledJourneyVersion]
  {
    var found = entries.withLock { cached in cached.filter { keys.contains($0.key) } }
    let missing = keys.subtracting(found.keys)
    guard !missing.isEmpty else { return found }
    let definitions = try await store.definitions(Array(missing), on: connection)
    let templateIDs = Array(Set(definitions.values.flatMap { $0.steps.compactMap(\.templateID) }))
    let templates = templateIDs.isEmpty ? [:] : try await store.templates(templateIDs, on: connection)
    for (key, definition) in definitions {
      let used = templates.filter { id, _ in definition.steps.contains { $0.templateID == id } }
      found[key] = CompiledJourneyVersion(
        definition: definition, templates: used, channels: Set(used.values.map(\.channel)), stepIDs: Set(definition.steps.map(\.id)))
    }
    let loaded = found
    entries.withLock { cached in cached.merge(loaded) { old, _ in old } }
    return found
  }
}

/// Turns events into journey changes (SPEC §12), one batch per transaction under the trigger
/// feed's lock, in event order: an event that is a journey's goal ends that journey for the
/// person; one a `wait_for_event` step waits for (received after the wait began) completes the
/// step and moves the person on; one that matches an active journey's trigger enrols them, as
/// its entry rule allows. The events are marked processed in the same transaction, so each is
/// acted on once whatever crashes. Metrics: `herald_campaign_journey_events_processed_total`,
/// `herald_campaign_journey_enrolments_total`.
package struct JourneyTriggerProcessor: Sendable {
  let store: CampaignStore
  let logger: Logger
  let batchSize: Int
  private let versions = JourneyVersionCache()

  package init(client: PostgresClient, logger: Logger, batchSize: Int = 1000) {
    self.store = CampaignStore(client: client, logger: logger)
    self.logger = logger
    self.batchSize = batchSize
  }

  /// Processes the next batch of events at `now`; returns how many (0: none pending, or another
  /// replica is at it).
  @discardableResult
  package func processBatch(at now: Date = Date()) async throws -> Int {
    let (store, versions, batchSize) = (self.store, self.versions, self.batchSize)
    let (events, enrolled, waitsEnded) = try await store.transaction { connection -> (Int, Int, Int) in
      guard try await store.lockTriggerFeed(on: connection) else { return (0, 0, 0) }
      let events = try await store.pendingEvents(limit: batchSize, on: connection)
      guard !events.isEmpty else { return (0, 0, 0) }
      let live = try await store.activeVersions(on: connection)
      let active = live.map(\.key)
      let activeSince = Dictionary(live.map { ($0.key, $0.activeSince) }, uniquingKeysWith: { first, _ in first })
      var open = try await store.openEnrolments(
        of: Array(Set(events.map(\.subscriberID))).sorted { $0.uuidString < $1.uuidString }, on: connection)
      let compiled = try await versions.load(Set(active + open.map(\.key)), store: store, on: connection)
      let openBySubscriber = Dictionary(grouping: open.indices, by: { open[$0].subscriberID })

      // Entry rules need each candidate's last entry.
      var candidates: [(journey: UUID, subscriber: UUID)] = []
      for event in events {
        for key in active {
          guard let version = compiled[key], version.definition.trigger.eventName == event.name,
            version.definition.entry != "every_time"
          else { continue }
          candidates.append((key.journey, event.subscriberID))
        }
      }
      var lastEntry = try await store.lastEntries(candidates, on: connection)

      var done: [StepDone] = []
      var changed: Set<Int> = []
      var enrolments: [NewEnrolment] = []
      // This batch's new enrolments by person, so a later event of the batch can be their goal.
      var enrolledNow: [UUID: [Int]] = [:]
      // An erased person's events act on nothing (their enrolments ended at the erasure).
      for event in events where !event.erased {
        let properties = JSONValue.parse(event.propertiesJSON)?.object ?? [:]
        for index in enrolledNow[event.subscriberID] ?? [] where !enrolments[index].goalMet {
          if compiled[enrolments[index].key]?.definition.goalEvent == event.name { enrolments[index].goalMet = true }
        }
        for index in openBySubscriber[event.subscriberID] ?? [] {
          var enrolment = open[index]
          guard enrolment.status == "active" || enrolment.status == "waiting", let version = compiled[enrolment.key] else { continue }
          let definition = version.definition
          if definition.goalEvent == event.name {
            enrolment.finish("exited", reason: "goal", at: now)
          } else if enrolment.status == "waiting", enrolment.waitingFor == event.name, let started = enrolment.stepStartedAt,
            event.receivedAt >= started, let stepID = enrolment.step, let place = definition.index(of: stepID)
          {
            let step = definition.steps[place]
            done.append(
              StepDone(
                enrolment: enrolment.id, step: step.id, version: enrolment.key.version, kind: step.kind, outcome: "event",
                detail: "\(event.name) (event \(event.id))", doneAt: now))
            enrolment.contextPatch = event.propertiesJSON
            enrolment.moveOn(to: definition.next(after: step.id, target: step.onEventStep), at: now)
          } else {
            continue
          }
          open[index] = enrolment
          changed.insert(index)
        }
        for key in active {
          // An event received before the journey became active (published or resumed) does not enrol.
          guard let version = compiled[key], version.definition.trigger.eventName == event.name,
            version.definition.trigger.matches(properties), let first = version.definition.steps.first,
            event.receivedAt >= activeSince[key] ?? .distantFuture
          else { continue }
          let definition = version.definition
          let pair = CampaignStore.pairKey(key.journey, event.subscriberID)
          switch definition.entry {
          case "once" where lastEntry[pair] != nil: continue
          case "once_per_period":
            if let last = lastEntry[pair], now.timeIntervalSince(last) < Double(definition.periodDays) * 86_400 { continue }
          default: break
          }
          lastEntry[pair] = now
          enrolledNow[event.subscriberID, default: []].append(enrolments.count)
          enrolments.append(
            NewEnrolment(
              key: key, subscriberID: event.subscriberID, eventID: event.id, firstStep: first.id, contextJSON: event.propertiesJSON))
        }
      }
      let inserted = try await store.insertEnrolments(enrolments, at: now, on: connection)
      try await store.writeStepsDone(done, on: connection)
      try await store.updateEnrolments(changed.sorted().map { open[$0] }, on: connection)
      try await store.markProcessed(events.map(\.id), at: now, on: connection)
      return (events.count, inserted, done.count)
    }
    if waitsEnded > 0 {
      Counter(label: "herald_campaign_journey_steps_total", dimensions: [("kind", "wait_for_event")]).increment(by: waitsEnded)
    }
    if events > 0 { Counter(label: "herald_campaign_journey_events_processed_total").increment(by: events) }
    if enrolled > 0 { Counter(label: "herald_campaign_journey_enrolments_total").increment(by: enrolled) }
    return events
  }

  /// Processes until nothing is pending (tests and tools).
  package func drain(at now: Date = Date()) async throws {
    while try await processBatch(at: now) > 0 {}
  }

  package func run(idle: Duration = .milliseconds(500)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await processBatch() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("journey trigger batch failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

/// Performs the steps of due enrolments (SPEC §12). A batch is claimed with `FOR UPDATE SKIP
/// LOCKED` (replicas and workers share the work); each enrolment goes through as many steps as
/// are due (a send, a branch, an update, the start of a wait), grouped by step so a thousand
/// people at one step make one query; what was done, and where each person now is, is written in
/// the same transaction. A send step is written `pending` there — the journeys' outbox — and
/// `JourneyRelay` hands it to delivery, so a crash repeats nothing and skips nothing, and the
/// scheduler never waits on another service. Metrics: `herald_campaign_journey_steps_total{kind}`.
package struct JourneyScheduler: Sendable {
  let store: CampaignStore
  let settings: JourneySettings
  let logger: Logger
  private let versions = JourneyVersionCache()

  package init(client: PostgresClient, settings: JourneySettings = JourneySettings(), logger: Logger) {
    self.store = CampaignStore(client: client, logger: logger)
    self.settings = settings
    self.logger = logger
  }

  struct Outcome: Sendable {
    var enrolments = 0
    var steps: [String: Int] = [:]
  }

  private struct GroupKey: Hashable {
    var version: JourneyVersionKey
    var step: String
  }

  /// Performs the steps due at `now` of the next batch; returns how many enrolments it claimed.
  @discardableResult
  package func runBatch(at now: Date = Date()) async throws -> Int {
    let outcome = try await store.transaction { connection -> Outcome in
      try await self.perform(at: now, on: connection)
    }
    for (kind, count) in outcome.steps {
      Counter(label: "herald_campaign_journey_steps_total", dimensions: [("kind", kind)]).increment(by: count)
    }
    return outcome.enrolments
  }

  private func perform(at now: Date, on connection: PostgresConnection) async throws -> Outcome {
    var outcome = Outcome()
    var claimed = try await store.claimDueEnrolments(at: now, limit: settings.batchSize, on: connection)
    guard !claimed.isEmpty else { return outcome }
    outcome.enrolments = claimed.count
    let compiled = try await versions.load(Set(claimed.map(\.key)), store: store, on: connection)
    let alreadyDone = try await store.stepsDone(of: claimed.map(\.id), on: connection)
    var people = try await store.journeySubscribers(Array(Set(claimed.map(\.subscriberID))), on: connection)
    let defaultZone = TimeZone(identifier: settings.timeZone) ?? TimeZone(secondsFromGMT: 0)!
    var done: [StepDone] = []
    func record(_ enrolment: EnrolmentState, _ step: JourneyStep, _ result: String, _ detail: String = "", message: UUID? = nil) {
      done.append(
        StepDone(
          enrolment: enrolment.id, step: step.id, version: enrolment.key.version, kind: step.kind, outcome: result, detail: detail,
          messageID: message, doneAt: now))
      outcome.steps[step.kind, default: 0] += 1
    }

    var pending = Array(claimed.indices)
    // Steps only lead forward, so no enrolment needs more rounds than there are steps.
    for _ in 0...JourneyDefinition.maxSteps where !pending.isEmpty {
      var groups: [GroupKey: [Int]] = [:]
      var next: [Int] = []
      for index in pending {
        var enrolment = claimed[index]
        // Finished by the step before.
        guard enrolment.status == "active" || enrolment.status == "waiting" else { continue }
        guard let version = compiled[enrolment.key], let stepID = enrolment.step, let place = version.definition.index(of: stepID)
        else {
          // Verification reports it (data.journey_step_missing); looked at again in an hour.
          logger.error(
            "journey enrolment is at a step its version does not have",
            metadata: ["enrolment": "\(enrolment.id.lowercasedString)", "step": "\(enrolment.step ?? "")"])
          enrolment.dueAt = now.addingTimeInterval(3_600)
          claimed[index] = enrolment
          continue
        }
        let definition = version.definition
        let step = definition.steps[place]
        let person = people[enrolment.subscriberID]
        // Unsubscribed: consenting to none of the channels the journey sends on (a journey that
        // sends nothing: no longer active).
        if definition.exitOnUnsubscribe && enrolment.stepStartedAt == nil
          && !(person.map { person in
            person.active && (version.channels.isEmpty || version.channels.contains { person.address(for: $0) != nil })
          } ?? false)
        {
          enrolment.finish("exited", reason: "unsubscribed", at: now)
          claimed[index] = enrolment
          continue
        }
        // A step done before (an enrolment migrated to a version that has it later): not again.
        if alreadyDone.contains("\(enrolment.id.lowercasedString):\(step.id)") {
          enrolment.moveOn(to: definition.next(after: step.id, target: step.nextStep), at: now)
          claimed[index] = enrolment
          next.append(index)
          continue
        }
        switch step.kind {
        case "wait":
          if enrolment.stepStartedAt == nil {
            let zone =
              person.flatMap { OutboxRelay.timeZone(in: MessageTemplate.attributes(json: $0.attributesJSON)) }
              .flatMap(TimeZone.init(identifier:)) ?? defaultZone
            enrolment.stepStartedAt = now
            enrolment.dueAt = step.waitEnd(from: now, zone: zone)
          } else {
            record(enrolment, step, "waited")
            enrolment.moveOn(to: definition.next(after: step.id, target: step.nextStep), at: now)
            next.append(index)
          }
        case "wait_for_event":
          if enrolment.stepStartedAt == nil {
            enrolment.status = "waiting"
            enrolment.waitingFor = step.event
            enrolment.stepStartedAt = now
            enrolment.dueAt = now.addingTimeInterval(Double(step.timeoutSeconds ?? 0))
          } else {
            record(enrolment, step, "timeout", "no \(step.event ?? "event") within \(step.timeoutSeconds ?? 0) s")
            enrolment.moveOn(to: definition.next(after: step.id, target: step.onTimeoutStep), at: now)
            next.append(index)
          }
        case "exit":
          record(enrolment, step, "exited")
          enrolment.finish("exited", reason: "exit_step", at: now)
        default:
          groups[GroupKey(version: enrolment.key, step: step.id), default: []].append(index)
        }
        claimed[index] = enrolment
      }
      for (group, members) in groups.sorted(by: { ($0.key.version.journey, $0.key.step) < ($1.key.version.journey, $1.key.step) }) {
        guard let version = compiled[group.version], let place = version.definition.index(of: group.step) else { continue }
        let definition = version.definition
        let step = definition.steps[place]
        switch step.kind {
        case "branch":
          let matched = try await store.branchMatches(
            members.map { claimed[$0].id }, match: step.match, conditions: step.conditions, steps: version.stepIDs, on: connection)
          for index in members {
            let holds = matched.contains(claimed[index].id)
            record(claimed[index], step, holds ? "then" : "else")
            claimed[index].moveOn(to: definition.next(after: step.id, target: holds ? step.thenStep : step.elseStep), at: now)
          }
        case "update":
          let subscribers = Array(Set(members.map { claimed[$0].subscriberID })).sorted { $0.uuidString < $1.uuidString }
          try await store.mergeAttributes(subscribers, attributes: step.attributesJSON ?? "{}", on: connection)
          people.merge(try await store.journeySubscribers(subscribers, on: connection)) { _, new in new }
          for index in members {
            record(claimed[index], step, "updated")
            claimed[index].moveOn(to: definition.next(after: step.id, target: step.nextStep), at: now)
          }
        default:
          // Into the outbox: the relay renders and enqueues it, checking consent then.
          for index in members {
            record(claimed[index], step, "pending")
            claimed[index].moveOn(to: definition.next(after: step.id, target: step.nextStep), at: now)
          }
        }
        next.append(contentsOf: members)
      }
      pending = next
    }
    try await store.writeStepsDone(done, on: connection)
    try await store.updateEnrolments(claimed, on: connection)
    return outcome
  }

  /// Runs batches until none is due at `now` (tests and tools).
  package func drain(at now: Date = Date()) async throws {
    while try await runBatch(at: now) > 0 {}
  }

  package func run(idle: Duration = .milliseconds(500)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await runBatch() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("journey scheduler batch failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

/// Hands pending journey sends (SPEC §12) to delivery: claims a batch with `FOR UPDATE SKIP
/// LOCKED`, renders each for its person (consent and status checked now: an unsubscribe wins over
/// a send already recorded), enqueues them with the idempotency key
/// `journey:<journey>:<version>:<step>:<enrolment>`, and records each outcome and message in the
/// same transaction. A crash before the commit leaves them pending; the next try sends the same
/// keys and delivery answers them as duplicates with the message it queued. Metric:
/// `herald_campaign_journey_sends_total{outcome}`.
package struct JourneyRelay: Sendable {
  let store: CampaignStore
  let sink: any MessageSink
  let links: UnsubscribeLinks
  let tracking: TrackingLinks
  let batchSize: Int
  let logger: Logger
  private let versions = JourneyVersionCache()

  package init(
    client: PostgresClient, sink: any MessageSink, links: UnsubscribeLinks = .none, tracking: TrackingLinks = .none,
    batchSize: Int = 1000, logger: Logger
  ) {
    self.store = CampaignStore(client: client, logger: logger)
    self.sink = sink
    self.links = links
    self.tracking = tracking
    self.batchSize = batchSize
    self.logger = logger
  }

  private struct StepKey: Hashable {
    var version: JourneyVersionKey
    var step: String
  }

  /// The result of one send: its outcome (`sent`, `suppressed`, `skipped`, `failed`), why, and
  /// its message in delivery.
  struct SendResult: Sendable {
    var outcome: String
    var detail: String = ""
    var message: UUID?
  }

  /// Relays the next batch; returns how many sends it settled (0: none pending).
  @discardableResult
  package func relayBatch() async throws -> Int {
    let outcomes = try await store.transaction { connection -> [String: Int] in
      let sends = try await store.claimPendingSends(limit: batchSize, on: connection)
      guard !sends.isEmpty else { return [:] }
      let compiled = try await versions.load(Set(sends.map(\.key)), store: store, on: connection)
      let people = try await store.journeySubscribers(Array(Set(sends.map(\.subscriberID))), on: connection)
      var results = Array(repeating: SendResult(outcome: "failed", detail: "the step is gone"), count: sends.count)
      for index in sends.indices where sends[index].archived {
        results[index] = SendResult(outcome: "skipped", detail: "the journey was archived before it was sent")
      }
      let groups = Dictionary(grouping: sends.indices.filter { !sends[$0].archived }) {
        StepKey(version: sends[$0].key, step: sends[$0].step)
      }
      for (group, indices) in groups.sorted(by: { ($0.key.version.journey, $0.key.step) < ($1.key.version.journey, $1.key.step) }) {
        guard let version = compiled[group.version], let place = version.definition.index(of: group.step) else { continue }
        let sent = try await send(indices.map { sends[$0] }, step: version.definition.steps[place], version: version, people: people)
        for (offset, index) in indices.enumerated() { results[index] = sent[offset] }
      }
      try await store.settleSends(sends, results: results, on: connection)
      return Dictionary(grouping: results, by: \.outcome).mapValues(\.count)
    }
    for (outcome, count) in outcomes {
      Counter(label: "herald_campaign_journey_sends_total", dimensions: [("outcome", outcome)]).increment(by: count)
    }
    return outcomes.values.reduce(0, +)
  }

  /// The key of one enrolment's send at one step of one version.
  static func idempotencyKey(_ send: PendingSend) -> String {
    "journey:\(send.key.journey.lowercasedString):\(send.key.version):\(send.step):\(send.enrolment.lowercasedString)"
  }

  /// Renders and enqueues one step's messages; a result per enrolment, in order.
  private func send(
    _ enrolments: [PendingSend], step: JourneyStep, version: CompiledJourneyVersion, people: [UUID: JourneySubscriber]
  ) async throws -> [SendResult] {
    var results = Array(repeating: SendResult(outcome: "failed", detail: "not sent"), count: enrolments.count)
    guard let templateID = step.templateID, let template = version.templates[templateID] else {
      return Array(
        repeating: SendResult(outcome: "failed", detail: "the step's template is gone"), count: enrolments.count)
    }
    let channel = template.channel
    let signer = links.signer()
    let linkTracking = channel == "email" ? LinkTracking(links: tracking, opens: step.trackOpens, clicks: step.trackClicks) : nil
    var messages: [(Int, Herald_Delivery_V1_OutboundMessage)] = []
    for (offset, enrolment) in enrolments.enumerated() {
      guard let person = people[enrolment.subscriberID], person.active else {
        results[offset] = SendResult(outcome: "skipped", detail: "subscriber is not active")
        continue
      }
      guard let recipient = person.address(for: channel) else {
        results[offset] = SendResult(outcome: "skipped", detail: "not subscribed to \(channel)")
        continue
      }
      let recipientData = MessageRecipient(
        subscriber: person.id, email: person.email, phone: person.phone, firstName: person.firstName, lastName: person.lastName,
        attributes: MessageTemplate.attributes(json: person.attributesJSON))
      let message: Herald_Delivery_V1_OutboundMessage
      do {
        // The journey's id stands where a campaign's would: the unsubscribe records it.
        message = try OutboxRelay.message(
          template, channel: channel, to: recipientData, address: recipient, key: Self.idempotencyKey(enrolment),
          sender: enrolment.key.journey, signer: signer, tracking: linkTracking, keyedTracking: true)
      } catch {
        results[offset] = SendResult(outcome: "failed", detail: "render: \(error.message)")
        continue
      }
      messages.append((offset, message))
    }
    // In parts under the gRPC message limit; a message delivery refuses is failed with the
    // reason and the part sent again without it (what went before is answered as duplicates).
    var remaining = messages
    while !remaining.isEmpty {
      let outbound = remaining.map(\.1)
      let part = OutboxRelay.parts(of: outbound, maxBytes: OutboxRelay.maxRequestBytes)[0]
      var request = Herald_Delivery_V1_EnqueueMessagesRequest()
      request.messages = Array(outbound[part])
      do {
        let response = try await sink.enqueue(request)
        let answers = Dictionary(response.results.map { ($0.idempotencyKey, $0) }, uniquingKeysWith: { first, _ in first })
        for (offset, message) in remaining[part] {
          guard let answer = answers[message.idempotencyKey], let id = UUID(text: answer.messageID) else {
            throw RPCError(code: .internalError, message: "delivery did not answer for \(message.idempotencyKey)")
          }
          results[offset] =
            answer.suppressed
            ? SendResult(outcome: "suppressed", detail: "on the suppression list", message: id)
            : SendResult(outcome: "sent", message: id)
        }
        remaining.removeFirst(part.count)
      } catch let error as RPCError where error.code == .invalidArgument || error.code == .failedPrecondition {
        // Refused for what the messages are, not for the moment: failed with the reason, never
        // retried. One message named: that one, and the part goes again without it.
        if let field = error.field, let index = OutboxRelay.messageIndex(field), request.messages.indices.contains(index) {
          results[remaining[index].0] = SendResult(outcome: "failed", detail: "delivery refused it: \(error.message)")
          remaining.remove(at: index)
        } else {
          for (offset, _) in remaining[part] {
            results[offset] = SendResult(outcome: "failed", detail: "delivery refused it: \(error.message)")
          }
          remaining.removeFirst(part.count)
        }
      }
    }
    return results
  }

  /// Relays until nothing is pending (tests and tools).
  package func drain() async throws {
    while try await relayBatch() > 0 {}
  }

  package func run(idle: Duration = .milliseconds(500)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await relayBatch() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("journey relay batch failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

/// Evaluates the segments that segment_entered triggers watch, every `interval`: each newcomer
/// gets a `herald.segment_entered` event (the first evaluation only sets who is in it).
package struct SegmentWatcher: Sendable {
  let store: CampaignStore
  let interval: Duration
  let logger: Logger

  package init(client: PostgresClient, interval: Duration, logger: Logger) {
    self.store = CampaignStore(client: client, logger: logger)
    self.interval = interval
    self.logger = logger
  }

  /// Evaluates every watched segment that is due at `now`; returns the events written.
  @discardableResult
  package func tick(at now: Date = Date()) async throws -> Int {
    var entered = 0
    for segment in try await store.watchedSegments() {
      if let result = try await store.evaluateSegment(segment, at: now, interval: interval) { entered += result.entered }
    }
    return entered
  }

  package func run() async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        try await tick()
      } catch {
        logger.error("segment evaluation failed; will retry", metadata: ["error": "\(error.logDescription)"])
      }
      await BackgroundWorker.pause(.seconds(10))
    }
  }
}
