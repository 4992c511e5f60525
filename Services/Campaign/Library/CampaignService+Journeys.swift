import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Journeys (SPEC §12): definitions checked and mapped to and from protobuf, the status machine,
/// enrolments, per-step counts, and custom events.
extension CampaignService {
  package func createJourney(request: Herald_Campaign_V1_CreateJourneyRequest, context: ServerContext) async throws
    -> Herald_Campaign_V1_Journey
  {
    guard request.hasDefinition else { throw RPCError.field("definition", .invalidArgument, "definition is required") }
    let definition = try Self.definition(request.definition)
    return Self.message(try await store.createJourney(name: try Self.name(request.name), definition: definition, signsLinks: links.canSign))
  }

  package func getJourney(request: Herald_Campaign_V1_GetJourneyRequest, context: ServerContext) async throws -> Herald_Campaign_V1_Journey
  {
    Self.message(try await store.journey(id: try Self.uuid(request.journeyID, field: "journey_id")))
  }

  package func listJourneys(
    request: Herald_Campaign_V1_ListJourneysRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListJourneysResponse {
    let statuses = ["draft", "active", "paused", "archived"]
    guard request.status.isEmpty || statuses.contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "status '\(request.status)' must be one of \(statuses.joined(separator: ", "))")
    }
    var response = Herald_Campaign_V1_ListJourneysResponse()
    response.journeys = try await store.journeys(status: request.status.isEmpty ? nil : request.status).map(Self.message)
    return response
  }

  package func updateJourney(request: Herald_Campaign_V1_UpdateJourneyRequest, context: ServerContext) async throws
    -> Herald_Campaign_V1_Journey
  {
    let id = try Self.uuid(request.journeyID, field: "journey_id")
    guard request.hasDefinition else { throw RPCError.field("definition", .invalidArgument, "definition is required") }
    let definition = try Self.definition(request.definition)
    return Self.message(
      try await store.updateJourney(id, definition: definition, migrate: request.migrateEnrolments, signsLinks: links.canSign).0)
  }

  package func publishJourney(
    request: Herald_Campaign_V1_JourneyTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Journey {
    Self.message(
      try await store.transitionJourney(try Self.uuid(request.journeyID, field: "journey_id"), "publish", signsLinks: links.canSign))
  }

  package func pauseJourney(request: Herald_Campaign_V1_JourneyTransitionRequest, context: ServerContext) async throws
    -> Herald_Campaign_V1_Journey
  {
    Self.message(try await store.transitionJourney(try Self.uuid(request.journeyID, field: "journey_id"), "pause"))
  }

  package func resumeJourney(
    request: Herald_Campaign_V1_JourneyTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Journey {
    Self.message(try await store.transitionJourney(try Self.uuid(request.journeyID, field: "journey_id"), "resume"))
  }

  package func archiveJourney(
    request: Herald_Campaign_V1_JourneyTransitionRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Journey {
    Self.message(try await store.transitionJourney(try Self.uuid(request.journeyID, field: "journey_id"), "archive"))
  }

  package func listJourneyEnrolments(
    request: Herald_Campaign_V1_ListJourneyEnrolmentsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListJourneyEnrolmentsResponse {
    let journey = try Self.uuid(request.journeyID, field: "journey_id")
    let subscriber = request.subscriberID.isEmpty ? nil : try RPCError.uuid(request.subscriberID, field: "subscriber_id")
    let statuses = ["active", "waiting", "completed", "exited"]
    guard request.status.isEmpty || statuses.contains(request.status) else {
      throw RPCError.field("status", .invalidArgument, "status '\(request.status)' must be one of \(statuses.joined(separator: ", "))")
    }
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 50)")
    }
    var after: UUID?
    if !request.pageToken.isEmpty {
      guard let data = Data(base64Encoded: request.pageToken), let id = UUID(text: String(decoding: data, as: UTF8.self))
      else { throw RPCError.field("page_token", .invalidArgument, "page_token is not one this service gave out") }
      after = id
    }
    let (enrolments, next) = try await store.enrolments(
      of: journey, subscriber: subscriber, status: request.status.isEmpty ? nil : request.status,
      pageSize: request.pageSize == 0 ? 50 : Int(request.pageSize), after: after)
    var response = Herald_Campaign_V1_ListJourneyEnrolmentsResponse()
    response.enrolments = enrolments.map(Self.message)
    if let next { response.nextPageToken = Data(next.uuidString.utf8).base64EncodedString() }
    return response
  }

  package func getJourneyAnalytics(
    request: Herald_Campaign_V1_GetJourneyAnalyticsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_JourneyAnalytics {
    let journey = try Self.uuid(request.journeyID, field: "journey_id")
    let record = try await store.journeyAnalytics(journey)
    var analytics = Herald_Campaign_V1_JourneyAnalytics()
    analytics.journeyID = journey.lowercasedString
    analytics.enrolled = record.byStatus.values.reduce(0, +)
    analytics.active = (record.byStatus["active"] ?? 0) + (record.byStatus["waiting"] ?? 0)
    analytics.completed = record.byStatus["completed"] ?? 0
    analytics.exited = record.byStatus["exited"] ?? 0
    analytics.steps = record.steps.map { cell in
      var counts = Herald_Campaign_V1_JourneyStepCounts()
      counts.version = Int32(cell.version)
      counts.step = cell.step
      counts.kind = cell.kind
      counts.entered = cell.entered
      counts.completed = cell.completed
      counts.waiting = cell.waiting
      counts.exited = cell.exited
      counts.outcomes = cell.outcomes
      counts.delivered = cell.delivered
      counts.opened = cell.opened
      counts.clicked = cell.clicked
      counts.bounced = cell.bounced
      return counts
    }
    return analytics
  }

  package func recordEvents(
    request: Herald_Campaign_V1_RecordEventsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_RecordEventsResponse {
    guard (1...1_000).contains(request.events.count) else {
      throw RPCError.field("events", .invalidArgument, "events holds \(request.events.count); give 1 to 1,000 per call")
    }
    let now = Date()
    let inputs = try request.events.enumerated().map { index, item in try Self.event(item, field: "events[\(index)]", now: now) }
    let recorded = try await store.recordEvents(inputs)
    var response = Herald_Campaign_V1_RecordEventsResponse()
    response.events = recorded.map { record in
      var event = Herald_Campaign_V1_RecordedEvent()
      event.id = String(record.id)
      event.idempotencyKey = record.idempotencyKey
      event.name = record.name
      event.subscriberID = record.subscriberID.lowercasedString
      event.occurredAt = Google_Protobuf_Timestamp(date: record.occurredAt)
      event.duplicate = record.duplicate
      return event
    }
    response.duplicates = Int32(recorded.filter(\.duplicate).count)
    response.recorded = Int32(recorded.count) - response.duplicates
    return response
  }

  // MARK: Checks and mapping

  /// The most a custom event's properties may hold, as JSON.
  static let maxPropertiesBytes = 16_384

  static func event(_ item: Herald_Campaign_V1_EventInput, field: String, now: Date) throws -> NewEvent {
    let reference = try subscriberReference(
      id: item.subscriberID, email: item.email, phone: item.phone, field: field)
    guard JourneyEvents.isName(item.name) else {
      throw RPCError.field("\(field).name", .invalidArgument, "\(field).name '\(item.name)' must be 1 to 100 of A-Z a-z 0-9 _ . : -")
    }
    guard !item.name.hasPrefix(JourneyEvents.reservedPrefix) else {
      throw RPCError.field("\(field).name", .invalidArgument, "\(field).name '\(item.name)': names starting with herald. are Herald's own")
    }
    let properties = item.hasProperties ? try item.properties.jsonString() : "{}"
    guard properties.utf8.count <= maxPropertiesBytes else {
      throw RPCError.field(
        "\(field).properties", .invalidArgument, "\(field).properties is \(properties.utf8.count) bytes as JSON; at most 16 KiB")
    }
    guard JSONValue.parse(properties)?.holdsNUL == false else {
      throw RPCError.field("\(field).properties", .invalidArgument, "\(field).properties holds a NUL character, which cannot be stored")
    }
    let key = try Self.idempotencyKey(item.idempotencyKey, field: field)
    let occurredAt = item.hasOccurredAt ? try Self.occurredAt(item.occurredAt, field: field, now: now) : nil
    return NewEvent(subscriber: reference, name: item.name, propertiesJSON: properties, occurredAt: occurredAt, idempotencyKey: key)
  }

  /// Exactly one of an id, an e-mail and a phone, each well formed; errors name `field.x`.
  static func subscriberReference(id: String, email: String, phone: String, field: String) throws -> SubscriberReference {
    let references = [!id.isEmpty, !email.isEmpty, !phone.isEmpty].filter { $0 }.count
    guard references == 1 else {
      throw RPCError.field(
        "\(field).subscriber_id", .invalidArgument,
        "\(field) must name the subscriber by exactly one of subscriber_id, email and phone (it gives \(references))")
    }
    let subscriber = id.isEmpty ? nil : try RPCError.uuid(id, field: "\(field).subscriber_id")
    if !email.isEmpty, email.count > 254 || !email.contains("@") || email.contains(where: \.isWhitespace) {
      throw RPCError.field("\(field).email", .invalidArgument, "\(field).email '\(email)' is not an e-mail address")
    }
    if !phone.isEmpty, phone.wholeMatch(of: /\+[1-9][0-9]{6,14}/) == nil {
      throw RPCError.field("\(field).phone", .invalidArgument, "\(field).phone '\(phone)' is not an E.164 number such as +14155550123")
    }
    return SubscriberReference(id: subscriber, email: email.isEmpty ? nil : email, phone: phone.isEmpty ? nil : phone)
  }

  /// A checked definition; errors name `definition.<field>`.
  static func definition(_ message: Herald_Campaign_V1_JourneyDefinition) throws -> JourneyDefinition {
    func optional(_ text: String) -> String? { text.isEmpty ? nil : text }
    func id(_ text: String, _ field: String) throws -> UUID? {
      text.isEmpty ? nil : try RPCError.uuid(text, field: "definition.\(field)")
    }
    guard message.hasTrigger else { throw RPCError.field("definition.trigger", .invalidArgument, "definition.trigger is required") }
    var trigger = JourneyTrigger(kind: message.trigger.kind)
    trigger.listID = try id(message.trigger.listID, "trigger.list_id")
    trigger.event = optional(message.trigger.event)
    trigger.keyword = optional(message.trigger.keyword.uppercased())
    trigger.reply = message.trigger.reply
    trigger.segmentID = try id(message.trigger.segmentID, "trigger.segment_id")
    trigger.engagement = optional(message.trigger.engagement)
    trigger.campaignID = try id(message.trigger.campaignID, "trigger.campaign_id")
    var steps: [JourneyStep] = []
    for (index, item) in message.steps.enumerated() {
      let at = "steps[\(index)]"
      var step = JourneyStep(id: item.id, kind: item.kind)
      step.nextStep = optional(item.nextStep)
      step.templateID = try id(item.templateID, "\(at).template_id")
      step.trackOpens = item.trackOpens
      step.trackClicks = item.trackClicks
      step.waitSeconds = item.waitSeconds == 0 ? nil : Int(item.waitSeconds)
      step.untilWeekdays = item.untilWeekdays
      step.untilTime = optional(item.untilTime)
      step.event = optional(item.event)
      step.timeoutSeconds = item.timeoutSeconds == 0 ? nil : Int(item.timeoutSeconds)
      step.onEventStep = optional(item.onEventStep)
      step.onTimeoutStep = optional(item.onTimeoutStep)
      step.match = item.match.isEmpty ? "all" : item.match
      step.conditions = try item.conditions.map { condition in
        SegmentCondition(field: condition.field, op: condition.op, valueJSON: condition.hasValue ? try condition.value.jsonString() : "")
      }
      step.thenStep = optional(item.thenStep)
      step.elseStep = optional(item.elseStep)
      if item.hasAttributes {
        let json = try item.attributes.jsonString()
        guard JSONValue.parse(json)?.holdsNUL == false else {
          throw RPCError.field("definition.\(at).attributes", .invalidArgument, "definition.\(at).attributes holds a NUL character")
        }
        step.attributesJSON = json
      }
      steps.append(step)
    }
    var definition = JourneyDefinition(trigger: trigger, steps: steps)
    definition.entry = message.entry.isEmpty ? "once" : message.entry
    definition.periodDays = Int(message.periodDays)
    definition.exitOnUnsubscribe = message.exitOnUnsubscribe
    definition.goalEvent = optional(message.goalEvent)
    do {
      try definition.validate()
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    return definition
  }

  static func message(_ definition: JourneyDefinition) -> Herald_Campaign_V1_JourneyDefinition {
    var message = Herald_Campaign_V1_JourneyDefinition()
    let trigger = definition.trigger
    message.trigger.kind = trigger.kind
    message.trigger.listID = trigger.listID?.lowercasedString ?? ""
    message.trigger.event = trigger.event ?? ""
    message.trigger.keyword = trigger.keyword ?? ""
    message.trigger.reply = trigger.reply
    message.trigger.segmentID = trigger.segmentID?.lowercasedString ?? ""
    message.trigger.engagement = trigger.engagement ?? ""
    message.trigger.campaignID = trigger.campaignID?.lowercasedString ?? ""
    message.steps = definition.steps.map { step in
      var item = Herald_Campaign_V1_JourneyStep()
      item.id = step.id
      item.kind = step.kind
      item.nextStep = step.nextStep ?? ""
      item.templateID = step.templateID?.lowercasedString ?? ""
      item.trackOpens = step.trackOpens
      item.trackClicks = step.trackClicks
      item.waitSeconds = Int32(step.waitSeconds ?? 0)
      item.untilWeekdays = step.untilWeekdays
      item.untilTime = step.untilTime ?? ""
      item.event = step.event ?? ""
      item.timeoutSeconds = Int32(step.timeoutSeconds ?? 0)
      item.onEventStep = step.onEventStep ?? ""
      item.onTimeoutStep = step.onTimeoutStep ?? ""
      if step.kind == "branch" { item.match = step.match }
      item.conditions = step.conditions.map { condition in
        var value = Herald_Campaign_V1_JourneyCondition()
        value.field = condition.field
        value.op = condition.op
        if !condition.valueJSON.isEmpty, let parsed = try? Google_Protobuf_Value(jsonString: condition.valueJSON) { value.value = parsed }
        return value
      }
      item.thenStep = step.thenStep ?? ""
      item.elseStep = step.elseStep ?? ""
      if let json = step.attributesJSON, let attributes = try? Google_Protobuf_Struct(jsonString: json) { item.attributes = attributes }
      return item
    }
    message.entry = definition.entry
    message.periodDays = Int32(definition.periodDays)
    message.exitOnUnsubscribe = definition.exitOnUnsubscribe
    message.goalEvent = definition.goalEvent ?? ""
    return message
  }

  static func message(_ record: JourneyRecord) -> Herald_Campaign_V1_Journey {
    var message = Herald_Campaign_V1_Journey()
    message.id = record.id.lowercasedString
    message.name = record.name
    message.status = record.status
    message.version = Int32(record.version)
    message.definition = Self.message(record.definition)
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    message.updatedAt = Google_Protobuf_Timestamp(date: record.updatedAt)
    message.enrolled = record.enrolled
    return message
  }

  static func message(_ record: JourneyEnrolmentRecord) -> Herald_Campaign_V1_JourneyEnrolment {
    var message = Herald_Campaign_V1_JourneyEnrolment()
    message.id = record.id.lowercasedString
    message.journeyID = record.journeyID.lowercasedString
    message.version = Int32(record.version)
    message.subscriberID = record.subscriberID.lowercasedString
    message.status = record.status
    message.step = record.step ?? ""
    if let due = record.dueAt { message.dueAt = Google_Protobuf_Timestamp(date: due) }
    message.waitingFor = record.waitingFor ?? ""
    message.exitReason = record.exitReason ?? ""
    message.enteredAt = Google_Protobuf_Timestamp(date: record.enteredAt)
    if let finished = record.finishedAt { message.finishedAt = Google_Protobuf_Timestamp(date: finished) }
    message.path = record.path.map { done in
      var step = Herald_Campaign_V1_JourneyStepDone()
      step.step = done.step
      step.kind = done.kind
      step.outcome = done.outcome
      step.detail = done.detail
      step.messageID = done.messageID?.lowercasedString ?? ""
      step.doneAt = Google_Protobuf_Timestamp(date: done.doneAt)
      return step
    }
    return message
  }
}
