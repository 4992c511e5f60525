import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A published version of a journey.
package struct JourneyVersionKey: Hashable, Sendable {
  package var journey: UUID
  package var version: Int32
}

/// An enrolment as the trigger processor and the scheduler change it; written back whole by
/// `updateEnrolments`.
struct EnrolmentState: Sendable {
  var id: UUID
  var key: JourneyVersionKey
  var subscriberID: UUID
  /// active, waiting, completed or exited.
  var status: String
  var step: String?
  var stepStartedAt: Date?
  var dueAt: Date?
  var waitingFor: String?
  var exitReason: String?
  var finishedAt: Date?
  /// Properties merged into the context (an awaited event's), as a JSON object.
  var contextPatch: String?

  /// On to `next` (performed at once), or done when there is none.
  mutating func moveOn(to next: String?, at now: Date) {
    guard let next else {
      finish("completed", reason: nil, at: now)
      return
    }
    status = "active"
    step = next
    stepStartedAt = nil
    dueAt = now
    waitingFor = nil
  }

  /// Completed, or exited (at its current step) for `reason`.
  mutating func finish(_ status: String, reason: String?, at now: Date) {
    self.status = status
    exitReason = reason
    finishedAt = now
    dueAt = nil
    waitingFor = nil
  }
}

extension EnrolmentState {
  /// The columns an enrolment is read with (`e` is the enrolments table), and their types.
  static let columns = "e.id, e.journey_id, e.version, e.subscriber_id, e.status, e.step, e.step_started_at, e.due_at, e.waiting_for"
  typealias Row = (UUID, UUID, Int32, UUID, String, String?, Date?, Date?, String?)

  init(_ row: Row) {
    self.init(
      id: row.0, key: JourneyVersionKey(journey: row.1, version: row.2), subscriberID: row.3, status: row.4, step: row.5,
      stepStartedAt: row.6, dueAt: row.7, waitingFor: row.8)
  }
}

/// A step performed, for `journey_steps_done`.
struct StepDone: Sendable {
  var enrolment: UUID
  var step: String
  var version: Int32
  var kind: String
  var outcome: String
  var detail: String = ""
  var messageID: UUID?
  var doneAt: Date
}

/// An event not yet processed.
struct PendingEvent: Sendable {
  var id: Int64
  var name: String
  var subscriberID: UUID
  var propertiesJSON: String
  var receivedAt: Date
  var erased = false
}

/// A person enrolled by an event; `goalMet` when a later event of the same batch was the
/// journey's goal (they enter and exit at once).
struct NewEnrolment: Sendable {
  var key: JourneyVersionKey
  var subscriberID: UUID
  var eventID: Int64
  var firstStep: String
  var contextJSON: String
  var goalMet = false
}

/// A journey send recorded by the scheduler, waiting for the relay.
struct PendingSend: Sendable {
  var enrolment: UUID
  var step: String
  var key: JourneyVersionKey
  var subscriberID: UUID
  /// Its journey was archived since: not sent.
  var archived = false
}

/// What a step needs of a person: status, consent, address and the values templates use.
struct JourneySubscriber: Sendable {
  var id: UUID
  var active: Bool
  var email: String?
  var phone: String?
  var firstName: String
  var lastName: String
  var emailSubscribed: Bool
  var smsSubscribed: Bool
  var whatsapp: String?
  var whatsappSubscribed: Bool
  /// "<platform>:<token>" of the most recently seen live push token.
  var pushAddress: String?
  var attributesJSON: String

  /// Where a channel's message goes when the person consents to it; nil otherwise.
  func address(for channel: String) -> String? {
    switch channel {
    case "email": emailSubscribed ? email : nil
    case "whatsapp": whatsappSubscribed ? whatsapp : nil
    case "push": pushAddress
    default: smsSubscribed ? phone : nil
    }
  }
}

/// The statements of the journey trigger processor and scheduler (SPEC §12); each runs in the
/// caller's transaction.
extension CampaignStore {
  // MARK: Trigger processing

  /// Takes the trigger feed's lock; false when another transaction holds it.
  func lockTriggerFeed(on connection: PostgresConnection) async throws -> Bool {
    try await !connection.query("SELECT 1 FROM campaign.journey_trigger_feed FOR UPDATE SKIP LOCKED", logger: logger).collect().isEmpty
  }

  /// Waits for the trigger feed's lock: what changes journeys or a person's enrolments outside
  /// the processor (a status change, an edit, an erasure) takes it first, so it never
  /// interleaves with a batch of events (one lock order: the feed, enrolments, the subscriber).
  func waitForTriggerFeed(on connection: PostgresConnection) async throws {
    try await connection.query("SELECT 1 FROM campaign.journey_trigger_feed FOR UPDATE", logger: logger)
  }

  /// The next unprocessed events in id order, each with whether its person is erased (such an
  /// event is marked processed and acts on nothing).
  func pendingEvents(limit: Int, on connection: PostgresConnection) async throws -> [PendingEvent] {
    try await connection.query(
      """
      SELECT e.id, e.name, e.subscriber_id, e.properties::text, e.received_at, s.status = 'erased'
      FROM (SELECT * FROM campaign.events WHERE processed_at IS NULL ORDER BY id LIMIT \(limit)) e
      JOIN campaign.subscribers s ON s.id = e.subscriber_id
      ORDER BY e.id
      """, logger: logger
    ).decode((Int64, String, UUID, String, Date, Bool).self).elements().map {
      PendingEvent(id: $0.0, name: $0.1, subscriberID: $0.2, propertiesJSON: $0.3, receivedAt: $0.4, erased: $0.5)
    }
  }

  /// The current version of every active journey, with when the journey last became active (an
  /// event received before that does not enrol in it). Journeys change status and version only
  /// under the trigger feed's lock, which the caller holds.
  func activeVersions(on connection: PostgresConnection) async throws -> [(key: JourneyVersionKey, activeSince: Date)] {
    try await connection.query(
      "SELECT id, version, coalesce(active_since, updated_at) FROM campaign.journeys WHERE status = 'active'", logger: logger
    ).decode((UUID, Int32, Date).self).elements().map { (JourneyVersionKey(journey: $0.0, version: $0.1), $0.2) }
  }

  /// The definitions of `keys`.
  func definitions(_ keys: [JourneyVersionKey], on connection: PostgresConnection) async throws -> [JourneyVersionKey: JourneyDefinition] {
    guard !keys.isEmpty else { return [:] }
    var found: [JourneyVersionKey: JourneyDefinition] = [:]
    for try await (journey, version, json) in try await connection.query(
      """
      SELECT v.journey_id, v.version, v.definition::text FROM campaign.journey_versions v
      JOIN unnest(\(keys.map(\.journey))::uuid[], \(keys.map(\.version))::int4[]) AS k(journey_id, version)
        ON k.journey_id = v.journey_id AND k.version = v.version
      """, logger: logger
    ).decode((UUID, Int32, String).self) {
      found[JourneyVersionKey(journey: journey, version: version)] = try Self.decodedDefinition(json, of: journey)
    }
    return found
  }

  /// Unfinished enrolments of `subscribers`, locked (an event may wake or end them).
  func openEnrolments(of subscribers: [UUID], on connection: PostgresConnection) async throws -> [EnrolmentState] {
    try await connection.query(
      """
      SELECT \(unescaped: EnrolmentState.columns) FROM campaign.journey_enrolments e
      WHERE e.subscriber_id = ANY(\(subscribers)::uuid[]) AND e.status IN ('active', 'waiting')
      ORDER BY e.id FOR UPDATE
      """, logger: logger
    ).decode(EnrolmentState.Row.self).elements().map(EnrolmentState.init)
  }

  /// The latest entry of each (journey, subscriber) asked, for the entry rules.
  func lastEntries(_ pairs: [(journey: UUID, subscriber: UUID)], on connection: PostgresConnection) async throws -> [String: Date] {
    guard !pairs.isEmpty else { return [:] }
    var found: [String: Date] = [:]
    for try await (journey, subscriber, at) in try await connection.query(
      """
      SELECT p.journey_id, p.subscriber_id, last.at
      FROM unnest(\(pairs.map(\.journey))::uuid[], \(pairs.map(\.subscriber))::uuid[]) AS p(journey_id, subscriber_id)
      JOIN LATERAL (
        SELECT max(e.entered_at) AS at FROM campaign.journey_enrolments e
        WHERE e.subscriber_id = p.subscriber_id AND e.journey_id = p.journey_id
      ) last ON last.at IS NOT NULL
      """, logger: logger
    ).decode((UUID, UUID, Date).self) {
      found[Self.pairKey(journey, subscriber)] = at
    }
    return found
  }

  static func pairKey(_ journey: UUID, _ subscriber: UUID) -> String { "\(journey.lowercasedString):\(subscriber.lowercasedString)" }

  /// Inserts enrolments at their first step, due at once; an event enrols in a journey once.
  func insertEnrolments(_ enrolments: [NewEnrolment], at now: Date, on connection: PostgresConnection) async throws -> Int {
    guard !enrolments.isEmpty else { return 0 }
    return try await connection.query(
      """
      INSERT INTO campaign.journey_enrolments (
        journey_id, version, subscriber_id, event_id, status, step, due_at, context, entered_at, exit_reason, finished_at)
      SELECT u.journey_id, u.version, u.subscriber_id, u.event_id, CASE WHEN u.goal THEN 'exited' ELSE 'active' END, u.step,
        CASE WHEN u.goal THEN NULL ELSE \(now) END, u.context::jsonb, \(now), CASE WHEN u.goal THEN 'goal' END,
        CASE WHEN u.goal THEN \(now) END
      FROM unnest(\(enrolments.map(\.key.journey))::uuid[], \(enrolments.map(\.key.version))::int4[],
        \(enrolments.map(\.subscriberID))::uuid[], \(enrolments.map(\.eventID))::int8[], \(enrolments.map(\.firstStep))::text[],
        \(enrolments.map(\.contextJSON))::text[], \(enrolments.map(\.goalMet))::bool[])
        AS u(journey_id, version, subscriber_id, event_id, step, context, goal)
      ON CONFLICT (journey_id, event_id) DO NOTHING
      RETURNING 1
      """, logger: logger
    ).collect().count
  }

  func markProcessed(_ events: [Int64], at now: Date, on connection: PostgresConnection) async throws {
    guard !events.isEmpty else { return }
    try await connection.query(
      "UPDATE campaign.events SET processed_at = \(now) WHERE id = ANY(\(events)::int8[])", logger: logger)
    try await connection.query(
      "UPDATE campaign.journey_trigger_feed SET processed = processed + \(Int64(events.count)), updated_at = \(now)", logger: logger)
  }

  // MARK: Scheduler

  /// Claims up to `limit` enrolments of active journeys due at `now`, earliest first within each
  /// journey (journeys in a random order, so none waits behind another's backlog), with `FOR
  /// UPDATE SKIP LOCKED`: replicas (and a process's workers) share them. A paused journey's
  /// enrolments are not even scanned.
  func claimDueEnrolments(at now: Date, limit: Int, on connection: PostgresConnection) async throws -> [EnrolmentState] {
    let journeys = try await connection.query("SELECT id FROM campaign.journeys WHERE status = 'active'", logger: logger)
      .decode(UUID.self).elements().shuffled()
    var claimed: [EnrolmentState] = []
    for journey in journeys where claimed.count < limit {
      claimed += try await connection.query(
        """
        SELECT \(unescaped: EnrolmentState.columns) FROM campaign.journey_enrolments e
        WHERE e.journey_id = \(journey) AND e.status IN ('active', 'waiting') AND e.due_at <= \(now)
        ORDER BY e.due_at LIMIT \(limit - claimed.count)
        FOR UPDATE SKIP LOCKED
        """, logger: logger
      ).decode(EnrolmentState.Row.self).elements().map(EnrolmentState.init)
    }
    return claimed
  }

  /// The steps `enrolments` have done, as `enrolment:step` (a migrated enrolment may meet one again).
  func stepsDone(of enrolments: [UUID], on connection: PostgresConnection) async throws -> Set<String> {
    Set(
      try await connection.query(
        "SELECT enrolment_id, step FROM campaign.journey_steps_done WHERE enrolment_id = ANY(\(enrolments)::uuid[])", logger: logger
      ).decode((UUID, String).self).elements().map { "\($0.0.lowercasedString):\($0.1)" })
  }

  func journeySubscribers(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: JourneySubscriber] {
    var found: [UUID: JourneySubscriber] = [:]
    for try await (id, status, email, phone, first, last, emailOK, smsOK, attributes, whatsapp, whatsappOK, push)
      in try await connection.query(
        """
        SELECT s.id, s.status, s.email, s.phone, s.first_name, s.last_name, s.email_subscribed, s.sms_subscribed, s.attributes::text,
          s.whatsapp, s.whatsapp_subscribed, \(unescaped: Self.addressSQL("push"))
        FROM campaign.subscribers s WHERE s.id = ANY(\(ids)::uuid[])
        """, logger: logger
      ).decode((UUID, String, String?, String?, String, String, Bool, Bool, String, String?, Bool, String?).self)
    {
      found[id] = JourneySubscriber(
        id: id, active: status == "active", email: email, phone: phone, firstName: first, lastName: last, emailSubscribed: emailOK,
        smsSubscribed: smsOK, whatsapp: whatsapp, whatsappSubscribed: whatsappOK, pushAddress: push, attributesJSON: attributes)
    }
    return found
  }

  /// The templates with `ids` (checked when saved; a template does not change).
  func templates(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: MessageTemplate] {
    var found: [UUID: MessageTemplate] = [:]
    for try await (id, channel, format, subject, body, variables, content) in try await connection.query(
      """
      SELECT id, channel, format, subject, body, variables::text, content::text FROM campaign.templates
      WHERE id = ANY(\(ids)::uuid[])
      """,
      logger: logger
    ).decode((UUID, String, String, String, String, String, String?).self) {
      found[id] = try Self.storedTemplate(
        channel: channel, format: format, subject: subject, body: body, variablesJSON: variables, contentJSON: content,
        what: "template \(id.lowercasedString)")
    }
    return found
  }

  /// Of `enrolments`, those a branch's conditions hold for.
  func branchMatches(
    _ enrolments: [UUID], match: String, conditions: [SegmentCondition], steps: Set<String>, on connection: PostgresConnection
  ) async throws -> Set<UUID> {
    var builder = SQLBuilder()
    let predicate: String
    do {
      predicate = try SegmentFilter.compile(match: match, conditions: conditions, into: &builder, journeySteps: steps).sql
    } catch {
      throw RPCError(code: .dataLoss, message: "a stored branch no longer compiles (\(error.field): \(error.message))")
    }
    let ids = builder.bind(enrolments)
    return Set(
      try await connection.query(
        builder.query(
          """
          SELECT e.id FROM campaign.journey_enrolments e JOIN campaign.subscribers s ON s.id = e.subscriber_id
          WHERE e.id = ANY(\(ids)::uuid[]) AND (\(predicate))
          """), logger: logger
      ).decode(UUID.self).elements())
  }

  /// Merges `attributes` (a JSON object; a null removes its key) into each person's.
  func mergeAttributes(_ subscribers: [UUID], attributes json: String, on connection: PostgresConnection) async throws {
    guard case .object(let object) = JSONValue.parse(json) else {
      throw RPCError(code: .dataLoss, message: "a stored update step's attributes are not an object")
    }
    let removed = object.filter { $0.value == .null }.keys.sorted()
    // Locked in id order first, so two batches updating the same people cannot deadlock.
    try await connection.query(
      """
      UPDATE campaign.subscribers s SET attributes = (s.attributes - \(removed)::text[]) || jsonb_strip_nulls(\(json)::jsonb),
        updated_at = now()
      FROM (SELECT id FROM campaign.subscribers WHERE id = ANY(\(subscribers.sorted { $0.uuidString < $1.uuidString })::uuid[])
        AND status <> 'erased' ORDER BY id FOR NO KEY UPDATE) locked
      WHERE s.id = locked.id
      """, logger: logger)
  }

  // MARK: Relay

  /// Claims up to `limit` pending journey sends, oldest first, with `FOR UPDATE SKIP LOCKED`;
  /// those of paused journeys wait for the resume.
  func claimPendingSends(limit: Int, on connection: PostgresConnection) async throws -> [PendingSend] {
    try await connection.query(
      """
      SELECT d.enrolment_id, d.step, d.version, e.journey_id, e.subscriber_id, j.status = 'archived'
      FROM campaign.journey_steps_done d JOIN campaign.journey_enrolments e ON e.id = d.enrolment_id
        JOIN campaign.journeys j ON j.id = e.journey_id
      WHERE d.outcome = 'pending' AND j.status <> 'paused'
      ORDER BY d.done_at LIMIT \(limit)
      FOR UPDATE OF d SKIP LOCKED
      """, logger: logger
    ).decode((UUID, String, Int32, UUID, UUID, Bool).self).elements().map {
      PendingSend(
        enrolment: $0.0, step: $0.1, key: JourneyVersionKey(journey: $0.3, version: $0.2), subscriberID: $0.4, archived: $0.5)
    }
  }

  /// Records what became of relayed sends: their outcome, why, and their message.
  func settleSends(_ sends: [PendingSend], results: [JourneyRelay.SendResult], on connection: PostgresConnection) async throws {
    guard !sends.isEmpty else { return }
    try await connection.query(
      """
      UPDATE campaign.journey_steps_done d SET outcome = u.outcome, detail = u.detail, message_id = nullif(u.message_id, '')::uuid
      FROM unnest(\(sends.map(\.enrolment))::uuid[], \(sends.map(\.step))::text[], \(results.map(\.outcome))::text[],
        \(results.map(\.detail))::text[], \(Self.texts(results.map(\.message)))::text[]) AS u(enrolment_id, step, outcome, detail, message_id)
      WHERE d.enrolment_id = u.enrolment_id AND d.step = u.step
      """, logger: logger)
  }

  /// Pending journey sends (the metric).
  package func pendingJourneySends() async throws -> Int64 {
    try await client.query("SELECT count(*) FROM campaign.journey_steps_done WHERE outcome = 'pending'", logger: logger)
      .decode(Int64.self).elements().first ?? 0
  }

  // MARK: Both

  func writeStepsDone(_ rows: [StepDone], on connection: PostgresConnection) async throws {
    guard !rows.isEmpty else { return }
    try await connection.query(
      """
      INSERT INTO campaign.journey_steps_done (enrolment_id, step, version, kind, outcome, detail, message_id, done_at)
      SELECT u.enrolment_id, u.step, u.version, u.kind, u.outcome, u.detail, nullif(u.message_id, '')::uuid, u.done_at
      FROM unnest(\(rows.map(\.enrolment))::uuid[], \(rows.map(\.step))::text[], \(rows.map(\.version))::int4[],
        \(rows.map(\.kind))::text[], \(rows.map(\.outcome))::text[], \(rows.map(\.detail))::text[],
        \(Self.texts(rows.map(\.messageID)))::text[], \(rows.map(\.doneAt))::timestamptz[])
        AS u(enrolment_id, step, version, kind, outcome, detail, message_id, done_at)
      """, logger: logger)
  }

  func updateEnrolments(_ states: [EnrolmentState], on connection: PostgresConnection) async throws {
    guard !states.isEmpty else { return }
    // Times go as timestamptz (as the claim compares them), each with whether it is set.
    func times(_ values: [Date?]) -> (dates: [Date], set: [Bool]) {
      (values.map { $0 ?? Date(timeIntervalSince1970: 0) }, values.map { $0 != nil })
    }
    let started = times(states.map(\.stepStartedAt))
    let due = times(states.map(\.dueAt))
    let finished = times(states.map(\.finishedAt))
    try await connection.query(
      """
      UPDATE campaign.journey_enrolments e SET
        version = u.version, status = u.status, step = nullif(u.step, ''),
        step_started_at = CASE WHEN u.has_started THEN u.started END, due_at = CASE WHEN u.has_due THEN u.due END,
        waiting_for = nullif(u.waiting_for, ''), exit_reason = nullif(u.reason, ''),
        finished_at = CASE WHEN u.has_finished THEN u.finished END,
        context = CASE WHEN u.patch = '' THEN e.context ELSE e.context || u.patch::jsonb END
      FROM unnest(\(states.map(\.id))::uuid[], \(states.map(\.key.version))::int4[], \(states.map(\.status))::text[],
        \(Self.texts(states.map(\.step)))::text[], \(started.dates)::timestamptz[], \(started.set)::bool[],
        \(due.dates)::timestamptz[], \(due.set)::bool[], \(Self.texts(states.map(\.waitingFor)))::text[],
        \(Self.texts(states.map(\.exitReason)))::text[], \(finished.dates)::timestamptz[], \(finished.set)::bool[],
        \(Self.texts(states.map(\.contextPatch)))::text[])
        AS u(id, version, status, step, started, has_started, due, has_due, waiting_for, reason, finished, has_finished, patch)
      WHERE e.id = u.id
      """, logger: logger)
  }

  // MARK: Engagement

  /// Sets the first delivery, hard bounce, open and click of journey messages (by their message
  /// id; other messages are not journeys' and are left out). Returns, for each message that was
  /// opened or clicked, who and which journey and step (for `herald.opened` / `herald.clicked`).
  func addJourneyEngagement(
    _ cells: [UUID: TouchDelta], on connection: PostgresConnection
  ) async throws -> [(message: UUID, subscriber: UUID, journey: UUID, step: String)] {
    guard !cells.isEmpty else { return [] }
    let rows = cells.sorted { $0.key.uuidString < $1.key.uuidString }
    return try await connection.query(
      """
      UPDATE campaign.journey_steps_done d SET
        delivered_at = coalesce(d.delivered_at, to_timestamp(nullif(u.delivered, '')::float8)),
        bounced_at = coalesce(d.bounced_at, to_timestamp(nullif(u.bounced, '')::float8)),
        opened_at = coalesce(d.opened_at, to_timestamp(nullif(u.opened, '')::float8)),
        clicked_at = coalesce(d.clicked_at, to_timestamp(nullif(u.clicked, '')::float8))
      FROM unnest(\(rows.map(\.key))::uuid[], \(Self.texts(rows.map(\.value.deliveredAt)))::text[],
          \(Self.texts(rows.map(\.value.bouncedAt)))::text[], \(Self.texts(rows.map(\.value.openedAt)))::text[],
          \(Self.texts(rows.map(\.value.clickedAt)))::text[]) AS u(message_id, delivered, bounced, opened, clicked),
        campaign.journey_enrolments e
      WHERE d.message_id = u.message_id AND e.id = d.enrolment_id
      RETURNING d.message_id, e.subscriber_id, e.journey_id, d.step
      """, logger: logger
    ).decode((UUID, UUID, UUID, String).self).elements().map { ($0.0, $0.1, $0.2, $0.3) }
  }

  // MARK: Segments

  /// The segments that active journeys' segment_entered triggers watch. Watches of segments
  /// no active journey uses any more are forgotten, so a journey that watches one again starts
  /// from a new baseline (no one who entered meanwhile enters all at once).
  package func watchedSegments() async throws -> [UUID] {
    let watched = try await client.query(
      """
      SELECT DISTINCT (v.definition -> 'trigger' ->> 'segment_id')::uuid FROM campaign.journeys j
      JOIN campaign.journey_versions v ON v.journey_id = j.id AND v.version = j.version
      WHERE j.status = 'active' AND v.trigger_event = \(JourneyEvents.segmentEntered)
      """, logger: logger
    ).decode(UUID.self).elements()
    try await client.query(
      "DELETE FROM campaign.journey_segment_watches WHERE segment_id <> ALL(\(watched)::uuid[])", logger: logger)
    return watched
  }

  /// Evaluates a watched segment when its last evaluation is `interval` old: who is in it now
  /// against who was, `herald.segment_entered` for each newcomer (none at the first evaluation:
  /// it sets the baseline). nil when another replica holds it or it is not due.
  package func evaluateSegment(_ segment: UUID, at now: Date, interval: Duration) async throws -> (entered: Int, left: Int)? {
    guard let stored = try await segmentFilter(id: segment) else { return nil }
    return try await transaction { connection in
      let created = try await !connection.query(
        """
        INSERT INTO campaign.journey_segment_watches (segment_id, evaluated_at) VALUES (\(segment), \(now))
        ON CONFLICT (segment_id) DO NOTHING RETURNING 1
        """, logger: logger
      ).collect().isEmpty
      guard
        let last = try await connection.query(
          "SELECT evaluated_at FROM campaign.journey_segment_watches WHERE segment_id = \(segment) FOR UPDATE SKIP LOCKED", logger: logger
        ).decode(Date.self).elements().first
      else { return nil }
      guard created || now.timeIntervalSince(last) >= Double(interval.components.seconds) else { return nil }
      let (predicate, compiled) = try Self.predicate(match: stored.match, conditions: stored.conditions)
      var builder = compiled
      let id = builder.bind(segment)
      let at = builder.bind(now)
      let announce = builder.bind(!created)
      let name = builder.bind(JourneyEvents.segmentEntered)
      let properties = builder.bind(Self.properties(["segment_id": .string(segment.lowercasedString)]))
      guard
        let (entered, left) = try await connection.query(
          builder.query(
            """
            WITH now_members AS (SELECT s.id FROM campaign.subscribers s WHERE s.status = 'active' AND (\(predicate))),
            entered AS (
              INSERT INTO campaign.journey_segment_members (segment_id, subscriber_id) SELECT \(id), id FROM now_members
              ON CONFLICT DO NOTHING RETURNING subscriber_id),
            gone AS (
              DELETE FROM campaign.journey_segment_members m WHERE m.segment_id = \(id)
                AND NOT EXISTS (SELECT 1 FROM now_members n WHERE n.id = m.subscriber_id) RETURNING 1),
            announced AS (
              INSERT INTO campaign.events (name, subscriber_id, properties, occurred_at)
              SELECT \(name), subscriber_id, \(properties)::jsonb, \(at) FROM entered WHERE \(announce) RETURNING 1),
            stamped AS (UPDATE campaign.journey_segment_watches SET evaluated_at = \(at) WHERE segment_id = \(id) RETURNING 1)
            SELECT (SELECT count(*) FROM announced), (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM stamped)
            """), logger: logger
        ).decode((Int64, Int64).self).elements().first
      else { throw PostgresError.protocol("segment evaluation gave no row") }
      return (Int(entered), Int(left))
    }
  }
}
