import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A journey as stored (SPEC §12).
package struct JourneyRecord: Sendable {
  package var id: UUID
  package var name: String
  /// draft, active, paused or archived.
  package var status: String
  /// The latest published version; 0 for a draft.
  package var version: Int
  package var definition: JourneyDefinition
  package var createdAt: Date
  package var updatedAt: Date
  /// Enrolments not finished, over every version.
  package var enrolled: Int64
}

/// One step an enrolment performed.
package struct JourneyStepDoneRecord: Sendable, Equatable {
  package var step: String
  package var kind: String
  package var outcome: String
  package var detail: String
  package var messageID: UUID?
  package var doneAt: Date
}

package struct JourneyEnrolmentRecord: Sendable {
  package var id: UUID
  package var journeyID: UUID
  package var version: Int
  package var subscriberID: UUID
  package var status: String
  package var step: String?
  package var dueAt: Date?
  package var waitingFor: String?
  package var exitReason: String?
  package var enteredAt: Date
  package var finishedAt: Date?
  /// The steps done, in the order of the version's steps.
  package var path: [JourneyStepDoneRecord]
}

/// Per version and step: who reached it, finished it, is at it, left at it; outcomes; the
/// engagement of a send step's messages.
package struct JourneyStepCountsRecord: Sendable, Equatable {
  package var version: Int
  package var step: String
  package var kind: String
  package var entered: Int64 = 0
  package var completed: Int64 = 0
  package var waiting: Int64 = 0
  package var exited: Int64 = 0
  package var outcomes: [String: Int64] = [:]
  package var delivered: Int64 = 0
  package var opened: Int64 = 0
  package var clicked: Int64 = 0
  package var bounced: Int64 = 0
}

package struct JourneyAnalyticsRecord: Sendable {
  package var byStatus: [String: Int64]
  package var steps: [JourneyStepCountsRecord]
}

/// Journeys and their versions: create, edit (a published journey's edit is its next version),
/// the status machine, enrolments with their path, per-step counts.
extension CampaignStore {
  /// Checks what a definition refers to: its templates (email or sms; an e-mail one must show an
  /// opt-out), the trigger's list, segment or campaign, the lists of branch conditions. NOT_FOUND
  /// or FAILED_PRECONDITION naming the field. `signsLinks`: whether unsubscribe links can be made
  /// (HERALD_SECRETS_KEY), which every e-mail needs.
  func checkReferences(_ definition: JourneyDefinition, signsLinks: Bool, on connection: PostgresConnection) async throws {
    let trigger = definition.trigger
    func exists(_ table: String, _ id: UUID) async throws -> Bool {
      try await !connection.query("SELECT 1 FROM campaign.\(unescaped: table) WHERE id = \(id)", logger: logger).collect().isEmpty
    }
    if trigger.kind == "list_joined", let list = trigger.listID, try await !exists("lists", list) {
      throw Self.notFound("list", list, field: "definition.trigger.list_id")
    }
    if trigger.kind == "segment_entered", let segment = trigger.segmentID, try await !exists("segments", segment) {
      throw Self.notFound("segment", segment, field: "definition.trigger.segment_id")
    }
    if trigger.kind == "engagement", let campaign = trigger.campaignID, try await !exists("campaigns", campaign) {
      throw Self.notFound("campaign", campaign, field: "definition.trigger.campaign_id")
    }
    let ids = Array(Set(definition.steps.compactMap(\.templateID)))
    var templates: [UUID: MessageTemplate] = [:]
    if !ids.isEmpty {
      for record in try await self.templates(ids: ids) { templates[record.id] = record.template }
    }
    for (index, step) in definition.steps.enumerated() {
      let field = "definition.steps[\(index)]"
      if let id = step.templateID {
        guard let template = templates[id] else { throw Self.notFound("template", id, field: "\(field).template_id") }
        guard Self.deliverableChannels.contains(template.channel) else {
          throw RPCError.field(
            "\(field).template_id", .failedPrecondition,
            "template \(id.lowercasedString) is for \(template.channel): no provider for channel \(template.channel)")
        }
        if template.channel == "email" && !signsLinks {
          throw RPCError.field(
            "\(field).template_id", .failedPrecondition,
            "e-mail needs unsubscribe links, which need HERALD_SECRETS_KEY; it is not set for the campaign service")
        }
        if template.channel == "email" && !template.showsOptOut {
          throw RPCError.field(
            "\(field).template_id", .failedPrecondition,
            "template \(id.lowercasedString) shows no opt-out: an e-mail body must use {{unsubscribe_url}} or {{preferences_url}}")
        }
        if template.channel != "email" && (step.trackOpens || step.trackClicks) {
          throw RPCError.field(
            "\(field).track_opens", .invalidArgument, "only e-mail is tracked; template \(id.lowercasedString) is \(template.channel)")
        }
      }
      for (place, condition) in step.conditions.enumerated() where condition.field == "list" {
        if case .string(let text) = JSONValue.parse(condition.valueJSON), let list = UUID(text: text), try await !exists("lists", list) {
          throw Self.notFound("list", list, field: "\(field).conditions[\(place)].value")
        }
      }
    }
  }

  static func encoded(_ definition: JourneyDefinition) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return String(decoding: try encoder.encode(definition), as: UTF8.self)
  }

  static func decodedDefinition(_ json: String, of journey: UUID) throws -> JourneyDefinition {
    do {
      return try JSONDecoder().decode(JourneyDefinition.self, from: Data(json.utf8))
    } catch {
      throw RPCError(code: .dataLoss, message: "the definition of journey \(journey.lowercasedString) no longer decodes")
    }
  }

  package func createJourney(name: String, definition: JourneyDefinition, signsLinks: Bool = true) async throws -> JourneyRecord {
    let json = try Self.encoded(definition)
    do {
      let id = try await transaction { connection in
        try await self.checkReferences(definition, signsLinks: signsLinks, on: connection)
        guard
          let id = try await connection.query(
            "INSERT INTO campaign.journeys (name, definition) VALUES (\(name), \(json)::jsonb) RETURNING id", logger: logger
          ).decode(UUID.self).elements().first
        else { throw PostgresError.protocol("no row returned") }
        return id
      }
      return try await journey(id: id)
    } catch  where error.sqlState == "23505" {
      throw Self.duplicateName("journey", name)
    }
  }

  /// Every journey (or those in `status`, or the one with `id`), oldest first.
  package func journeys(id: UUID? = nil, status: String? = nil) async throws -> [JourneyRecord] {
    let rows = try await client.query(
      """
      SELECT j.id, j.name, j.status, j.version, j.definition::text, j.created_at, j.updated_at,
        (SELECT count(*) FROM campaign.journey_enrolments e WHERE e.journey_id = j.id AND e.status IN ('active', 'waiting'))
      FROM campaign.journeys j
      WHERE (\(id)::uuid IS NULL OR j.id = \(id)) AND (\(status)::text IS NULL OR j.status = \(status))
      ORDER BY j.created_at, j.id
      """, logger: logger)
    var journeys: [JourneyRecord] = []
    for try await (id, name, status, version, json, createdAt, updatedAt, enrolled) in rows.decode(
      (UUID, String, String, Int32, String, Date, Date, Int64).self)
    {
      journeys.append(
        JourneyRecord(
          id: id, name: name, status: status, version: Int(version), definition: try Self.decodedDefinition(json, of: id),
          createdAt: createdAt, updatedAt: updatedAt, enrolled: enrolled))
    }
    return journeys
  }

  package func journey(id: UUID, field: String = "journey_id") async throws -> JourneyRecord {
    guard let journey = try await journeys(id: id).first else { throw Self.notFound("journey", id, field: field) }
    return journey
  }

  /// NOT_FOUND naming `journey_id` unless the journey exists (without counting its enrolments).
  func requireJourney(_ id: UUID) async throws {
    guard try await !client.query("SELECT 1 FROM campaign.journeys WHERE id = \(id)", logger: logger).collect().isEmpty else {
      throw Self.notFound("journey", id, field: "journey_id")
    }
  }

  /// Publishes `definition` as the next version in the caller's transaction (and moves the
  /// journey to `status`, when given); returns its number.
  private func publish(
    _ journey: UUID, _ definition: JourneyDefinition, status: String? = nil, on connection: PostgresConnection
  ) async throws -> Int32 {
    let json = try Self.encoded(definition)
    guard
      let version = try await connection.query(
        """
        WITH next AS (
          UPDATE campaign.journeys SET version = version + 1, definition = \(json)::jsonb, status = coalesce(\(status)::text, status),
            active_since = CASE WHEN \(status)::text = 'active' THEN now() ELSE active_since END, updated_at = now()
          WHERE id = \(journey) RETURNING version)
        INSERT INTO campaign.journey_versions (journey_id, version, definition, trigger_event, listens)
        SELECT \(journey), version, \(json)::jsonb, \(definition.trigger.eventName), \(definition.listens)::text[] FROM next
        RETURNING version
        """, logger: logger
      ).decode(Int32.self).elements().first
    else { throw PostgresError.protocol("no version returned") }
    return version
  }

  /// The journey's status, locked for the caller's transaction — after the trigger feed's lock,
  /// so a change never lands in the middle of a batch of events.
  private func lockedStatus(_ id: UUID, on connection: PostgresConnection) async throws -> String {
    try await waitForTriggerFeed(on: connection)
    guard
      let status = try await connection.query("SELECT status FROM campaign.journeys WHERE id = \(id) FOR UPDATE", logger: logger)
        .decode(String.self).elements().first
    else { throw Self.notFound("journey", id) }
    return status
  }

  /// Replaces the definition: a draft's stays a draft, a published journey's becomes its next
  /// version at once. `migrate` moves enrolments of earlier versions whose step exists (of the
  /// same kind) in the new version to it; returns the journey and how many moved.
  package func updateJourney(
    _ id: UUID, definition: JourneyDefinition, migrate: Bool, signsLinks: Bool = true
  ) async throws -> (JourneyRecord, Int) {
    let json = try Self.encoded(definition)
    let moved = try await transaction { connection -> Int in
      let status = try await self.lockedStatus(id, on: connection)
      guard status != "archived" else {
        throw RPCError.field("journey_id", .failedPrecondition, "journey \(id.lowercasedString) is archived; create a new one")
      }
      try await self.checkReferences(definition, signsLinks: signsLinks, on: connection)
      guard status != "draft" else {
        guard !migrate else {
          throw RPCError.field("migrate_enrolments", .failedPrecondition, "a draft journey has no enrolments to migrate")
        }
        try await connection.query(
          "UPDATE campaign.journeys SET definition = \(json)::jsonb, updated_at = now() WHERE id = \(id)", logger: logger)
        return 0
      }
      let version = try await self.publish(id, definition, on: connection)
      guard migrate else { return 0 }
      // Locked in id order first, as the trigger processor locks them.
      try await connection.query(
        """
        SELECT 1 FROM campaign.journey_enrolments WHERE journey_id = \(id) AND status IN ('active', 'waiting')
        ORDER BY id FOR UPDATE
        """, logger: logger)
      // A waiting person now waits for the new step's event (its timeout stays as it began).
      return try await connection.query(
        """
        UPDATE campaign.journey_enrolments e SET version = \(version),
          waiting_for = CASE WHEN e.status = 'waiting' THEN nullif(s.event, '') END
        FROM unnest(\(definition.steps.map(\.id))::text[], \(definition.steps.map(\.kind))::text[],
            \(definition.steps.map { $0.event ?? "" })::text[]) AS s(id, kind, event),
          campaign.journey_versions v
        WHERE e.journey_id = \(id) AND e.version < \(version) AND e.status IN ('active', 'waiting') AND e.step = s.id
          AND v.journey_id = e.journey_id AND v.version = e.version
          AND EXISTS (SELECT 1 FROM jsonb_array_elements(v.definition -> 'steps') o WHERE o ->> 'id' = s.id AND o ->> 'kind' = s.kind)
        RETURNING 1
        """, logger: logger
      ).collect().count
    }
    return (try await journey(id: id), moved)
  }

  /// publish (draft → active), pause (active → paused), resume (paused → active) or archive
  /// (any → archived: everyone enrolled exits). FAILED_PRECONDITION for any other move.
  package func transitionJourney(_ id: UUID, _ action: String, signsLinks: Bool = true) async throws -> JourneyRecord {
    try await transaction { connection in
      let status = try await self.lockedStatus(id, on: connection)
      let allowed: [String: (from: Set<String>, to: String)] = [
        "publish": (["draft"], "active"), "pause": (["active"], "paused"), "resume": (["paused"], "active"),
        "archive": (["draft", "active", "paused"], "archived"),
      ]
      guard let move = allowed[action], move.from.contains(status) else {
        throw RPCError.field("journey_id", .failedPrecondition, "journey \(id.lowercasedString) is \(status); it cannot \(action)")
      }
      if action != "publish" {
        try await connection.query(
          """
          UPDATE campaign.journeys SET status = \(move.to), updated_at = now(),
            active_since = CASE WHEN \(move.to) = 'active' THEN now() ELSE active_since END
          WHERE id = \(id)
          """, logger: logger)
      } else {
        guard
          let json = try await connection.query("SELECT definition::text FROM campaign.journeys WHERE id = \(id)", logger: logger)
            .decode(String.self).elements().first
        else { throw Self.notFound("journey", id) }
        let definition = try Self.decodedDefinition(json, of: id)
        // What it refers to may have gone since it was saved.
        try await self.checkReferences(definition, signsLinks: signsLinks, on: connection)
        _ = try await self.publish(id, definition, status: move.to, on: connection)
      }
      if action == "archive" {
        // Locked in id order first, as the trigger processor locks them.
        try await connection.query(
          """
          SELECT 1 FROM campaign.journey_enrolments WHERE journey_id = \(id) AND status IN ('active', 'waiting')
          ORDER BY id FOR UPDATE
          """, logger: logger)
        try await connection.query(
          """
          UPDATE campaign.journey_enrolments SET status = 'exited', exit_reason = 'archived', finished_at = now(), due_at = NULL,
            waiting_for = NULL
          WHERE journey_id = \(id) AND status IN ('active', 'waiting')
          """, logger: logger)
      }
    }
    return try await journey(id: id)
  }

  /// A page of a journey's enrolments, newest first, each with its path.
  package func enrolments(
    of journey: UUID, subscriber: UUID?, status: String?, pageSize: Int, after: UUID?
  ) async throws -> (enrolments: [JourneyEnrolmentRecord], next: UUID?) {
    try await requireJourney(journey)
    let rows = try await client.query(
      """
      SELECT e.id, e.version, e.subscriber_id, e.status, e.step, e.due_at, e.waiting_for, e.exit_reason, e.entered_at, e.finished_at
      FROM campaign.journey_enrolments e
      WHERE e.journey_id = \(journey) AND (\(subscriber)::uuid IS NULL OR e.subscriber_id = \(subscriber))
        AND (\(status)::text IS NULL OR e.status = \(status)) AND (\(after)::uuid IS NULL OR e.id < \(after))
      ORDER BY e.id DESC LIMIT \(pageSize + 1)
      """, logger: logger)
    var enrolments: [JourneyEnrolmentRecord] = []
    for try await (id, version, subscriberID, status, step, dueAt, waitingFor, exitReason, enteredAt, finishedAt) in rows.decode(
      (UUID, Int32, UUID, String, String?, Date?, String?, String?, Date, Date?).self)
    {
      enrolments.append(
        JourneyEnrolmentRecord(
          id: id, journeyID: journey, version: Int(version), subscriberID: subscriberID, status: status, step: step, dueAt: dueAt,
          waitingFor: waitingFor, exitReason: exitReason, enteredAt: enteredAt, finishedAt: finishedAt, path: []))
    }
    var next: UUID?
    if enrolments.count > pageSize {
      enrolments.removeLast()
      next = enrolments.last?.id
    }
    guard !enrolments.isEmpty else { return ([], nil) }
    // Each version's step order, for the path.
    var orders: [Int: [String: Int]] = [:]
    for try await (version, json) in try await client.query(
      """
      SELECT version, definition::text FROM campaign.journey_versions
      WHERE journey_id = \(journey) AND version = ANY(\(Array(Set(enrolments.map { Int32($0.version) })))::int4[])
      """, logger: logger
    ).decode((Int32, String).self) {
      let definition = try Self.decodedDefinition(json, of: journey)
      orders[Int(version)] = Dictionary(uniqueKeysWithValues: definition.steps.enumerated().map { ($1.id, $0) })
    }
    var paths: [UUID: [(Int, Int, JourneyStepDoneRecord)]] = [:]
    for try await (enrolment, version, step, kind, outcome, detail, message, doneAt) in try await client.query(
      """
      SELECT enrolment_id, version, step, kind, outcome, detail, message_id, done_at FROM campaign.journey_steps_done
      WHERE enrolment_id = ANY(\(enrolments.map(\.id))::uuid[])
      """, logger: logger
    ).decode((UUID, Int32, String, String, String, String, UUID?, Date).self) {
      let place = orders[Int(version)]?[step] ?? Int.max
      paths[enrolment, default: []].append(
        (
          Int(version), place,
          JourneyStepDoneRecord(step: step, kind: kind, outcome: outcome, detail: detail, messageID: message, doneAt: doneAt)
        ))
    }
    for index in enrolments.indices {
      enrolments[index].path = (paths[enrolments[index].id] ?? []).sorted { ($0.2.doneAt, $0.0, $0.1) < ($1.2.doneAt, $1.0, $1.1) }.map(\.2)
    }
    return (enrolments, next)
  }

  /// Counts by enrolment status, and per version and step (in the order of each version's steps).
  package func journeyAnalytics(_ journey: UUID) async throws -> JourneyAnalyticsRecord {
    try await requireJourney(journey)
    var byStatus: [String: Int64] = [:]
    var cells: [String: JourneyStepCountsRecord] = [:]
    func key(_ version: Int32, _ step: String) -> String { "\(version)\u{0}\(step)" }
    var versions: [(Int, JourneyDefinition)] = []
    for try await (version, json) in try await client.query(
      "SELECT version, definition::text FROM campaign.journey_versions WHERE journey_id = \(journey) ORDER BY version",
      logger: logger
    ).decode((Int32, String).self) {
      let definition = try Self.decodedDefinition(json, of: journey)
      versions.append((Int(version), definition))
      for step in definition.steps {
        cells[key(version, step.id)] = JourneyStepCountsRecord(version: Int(version), step: step.id, kind: step.kind)
      }
    }
    for try await (version, step, status, reason, count) in try await client.query(
      """
      SELECT version, coalesce(step, ''), status, coalesce(exit_reason, ''), count(*) FROM campaign.journey_enrolments
      WHERE journey_id = \(journey) GROUP BY 1, 2, 3, 4
      """, logger: logger
    ).decode((Int32, String, String, String, Int64).self) {
      byStatus[status, default: 0] += count
      guard var cell = cells[key(version, step)] else { continue }
      switch status {
      case "active", "waiting":
        cell.waiting += count
        cell.entered += count
      case "exited":
        cell.exited += count
        // An exit step is done (and counted as entered) before the person exits at it.
        if reason != "exit_step" { cell.entered += count }
      default: break
      }
      cells[key(version, step)] = cell
    }
    for try await (version, step, outcome, count, delivered, opened, clicked, bounced) in try await client.query(
      """
      SELECT d.version, d.step, d.outcome, count(*), count(d.delivered_at), count(d.opened_at), count(d.clicked_at), count(d.bounced_at)
      FROM campaign.journey_steps_done d JOIN campaign.journey_enrolments e ON e.id = d.enrolment_id
      WHERE e.journey_id = \(journey) GROUP BY 1, 2, 3
      """, logger: logger
    ).decode((Int32, String, String, Int64, Int64, Int64, Int64, Int64).self) {
      guard var cell = cells[key(version, step)] else { continue }
      cell.entered += count
      cell.completed += count
      cell.outcomes[outcome, default: 0] += count
      cell.delivered += delivered
      cell.opened += opened
      cell.clicked += clicked
      cell.bounced += bounced
      cells[key(version, step)] = cell
    }
    let steps = versions.flatMap { version, definition in
      definition.steps.compactMap { cells[key(Int32(version), $0.id)] }
    }
    return JourneyAnalyticsRecord(byStatus: byStatus, steps: steps)
  }
}
