import Foundation
import HeraldCore

/// The events Herald records itself for journeys (SPEC §12), besides the custom ones callers post
/// (`POST /v1/events`). Each is recorded only while some journey listens to it.
package enum JourneyEvents {
  /// A person was added to a list (`list_id`).
  package static let listJoined = "herald.list_joined"
  /// An inbound SMS or e-mail from a known person (`channel`, `keyword`, `reply`, `campaign_id`).
  package static let inbound = "herald.inbound"
  /// A person entered a watched segment (`segment_id`).
  package static let segmentEntered = "herald.segment_entered"
  /// Engagement with a campaign (`campaign_id`): `herald.opened`, `herald.clicked`,
  /// `herald.replied`, `herald.converted` (with `value_cents`).
  package static func engagement(_ kind: String) -> String { "herald.\(kind)" }
  package static let engagementKinds = ["opened", "clicked", "replied", "converted"]
  /// The prefix no custom event may use.
  package static let reservedPrefix = "herald."

  /// Herald's own event names.
  package static let heraldNames = Set([listJoined, inbound, segmentEntered] + engagementKinds.map(engagement))

  /// A custom name, or one of Herald's own.
  package static func isKnown(_ name: String) -> Bool { !name.hasPrefix(reservedPrefix) || heraldNames.contains(name) }

  static func unknownMessage(_ name: String) -> String {
    "'\(name)' is not one of Herald's events (\(heraldNames.sorted().joined(separator: ", "))); custom names may not start with herald."
  }

  /// Whether `name` is a well-formed event name: 1 to 100 of A-Z a-z 0-9 _ . : -.
  package static func isName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.count <= 100
      && name.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
          || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-")
      }
  }
}

/// What enrols a person in a journey.
package struct JourneyTrigger: Codable, Sendable, Equatable {
  /// list_joined, event, inbound, segment_entered or engagement.
  package var kind: String
  package var listID: UUID?
  package var event: String?
  /// inbound: the first word, upper-cased; nil for any.
  package var keyword: String?
  package var reply = false
  package var segmentID: UUID?
  /// engagement: opened, clicked, replied or converted.
  package var engagement: String?
  package var campaignID: UUID?

  package init(kind: String) { self.kind = kind }

  enum CodingKeys: String, CodingKey {
    case kind, event, keyword, reply, engagement
    case listID = "list_id"
    case segmentID = "segment_id"
    case campaignID = "campaign_id"
  }

  /// The name of the event that may enrol.
  package var eventName: String {
    switch kind {
    case "list_joined": JourneyEvents.listJoined
    case "inbound": JourneyEvents.inbound
    case "segment_entered": JourneyEvents.segmentEntered
    case "engagement": JourneyEvents.engagement(engagement ?? "")
    default: event ?? ""
    }
  }

  /// Whether an event of `eventName` with these properties enrols.
  package func matches(_ properties: [String: JSONValue]) -> Bool {
    func text(_ key: String) -> String? {
      if case .string(let value) = properties[key] { value } else { nil }
    }
    switch kind {
    case "list_joined": return text("list_id") == listID?.lowercasedString
    case "segment_entered": return text("segment_id") == segmentID?.lowercasedString
    case "inbound":
      if let keyword, text("keyword") != keyword { return false }
      if reply, properties["reply"] != .bool(true) { return false }
      return true
    case "engagement":
      // Opens and clicks of a campaign only: a journey's own messages' (herald.opened with a
      // journey_id) never trigger, so a journey cannot feed itself. A conversion or a reply
      // credited to no campaign matches a trigger that names none.
      if let campaignID { return text("campaign_id") == campaignID.lowercasedString }
      return text("campaign_id") != nil || !["opened", "clicked"].contains(engagement ?? "")
    default: return true
    }
  }
}

/// One step of a journey (see `herald.campaign.v1.JourneyStep`).
package struct JourneyStep: Codable, Sendable, Equatable {
  package var id: String
  /// send, wait, wait_for_event, branch, update or exit.
  package var kind: String
  package var nextStep: String?
  package var templateID: UUID?
  package var trackOpens = false
  package var trackClicks = false
  package var waitSeconds: Int?
  package var untilWeekdays: [String] = []
  package var untilTime: String?
  package var event: String?
  package var timeoutSeconds: Int?
  package var onEventStep: String?
  package var onTimeoutStep: String?
  package var match = "all"
  package var conditions: [SegmentCondition] = []
  package var thenStep: String?
  package var elseStep: String?
  /// update: a JSON object merged into the person's attributes (a null removes a key).
  package var attributesJSON: String?

  package init(id: String, kind: String) {
    self.id = id
    self.kind = kind
  }

  enum CodingKeys: String, CodingKey {
    case id, kind, event, match, conditions
    case nextStep = "next_step"
    case templateID = "template_id"
    case trackOpens = "track_opens"
    case trackClicks = "track_clicks"
    case waitSeconds = "wait_seconds"
    case untilWeekdays = "until_weekdays"
    case untilTime = "until_time"
    case timeoutSeconds = "timeout_seconds"
    case onEventStep = "on_event_step"
    case onTimeoutStep = "on_timeout_step"
    case thenStep = "then_step"
    case elseStep = "else_step"
    case attributesJSON = "attributes_json"
  }

  package static let kinds = ["send", "wait", "wait_for_event", "branch", "update", "exit"]
  static let weekdays = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
  static let longestWait = 365 * 86_400

  /// When a wait that begins at `now` ends, in `zone` for a wait until a weekday and time.
  package func waitEnd(from now: Date, zone: TimeZone) -> Date {
    if let seconds = waitSeconds, seconds > 0 { return now.addingTimeInterval(Double(seconds)) }
    guard let time = untilTime, let (hour, minute) = Self.clock(time) else { return now }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    let allowed = Set(untilWeekdays.compactMap { Self.weekdays.firstIndex(of: $0).map { $0 + 1 } })
    for days in 0...8 {
      guard let day = calendar.date(byAdding: .day, value: days, to: now),
        let candidate = calendar.date(bySettingHour: hour, minute: minute, second: 0, of: day)
      else { continue }
      if candidate > now && (allowed.isEmpty || allowed.contains(calendar.component(.weekday, from: candidate))) {
        return candidate
      }
    }
    return now.addingTimeInterval(86_400)
  }

  static func clock(_ text: String) -> (Int, Int)? {
    let parts = text.split(separator: ":")
    guard text.utf8.count == 5, parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]), (0..<24).contains(hour),
      (0..<60).contains(minute)
    else { return nil }
    return (hour, minute)
  }
}

/// A journey's definition: its trigger, steps, entry rule and exits. Stored as JSON; a published
/// version's never changes.
package struct JourneyDefinition: Codable, Sendable, Equatable {
  package var trigger: JourneyTrigger
  package var steps: [JourneyStep]
  /// once, once_per_period or every_time.
  package var entry = "once"
  package var periodDays = 0
  package var exitOnUnsubscribe = false
  package var goalEvent: String?

  package init(trigger: JourneyTrigger, steps: [JourneyStep]) {
    self.trigger = trigger
    self.steps = steps
  }

  enum CodingKeys: String, CodingKey {
    case trigger, steps, entry
    case periodDays = "period_days"
    case exitOnUnsubscribe = "exit_on_unsubscribe"
    case goalEvent = "goal_event"
  }

  package static let maxSteps = 50

  /// Every event name the definition uses: its trigger's, its wait_for_event steps', its goal's.
  package var listens: [String] {
    Array(Set([trigger.eventName] + steps.compactMap(\.event) + [goalEvent].compactMap { $0 })).sorted()
  }

  /// The channels its send steps use (by template), given the templates' channels.
  package func sendChannels(_ templateChannels: [UUID: String]) -> Set<String> {
    Set(steps.compactMap { $0.templateID.flatMap { templateChannels[$0] } })
  }

  package func index(of step: String) -> Int? { steps.firstIndex { $0.id == step } }

  /// The target that ends the journey (completed) instead of going to a step.
  package static let end = "end"

  /// Where a step leads: `target` when given, else the step after it; nil: the journey is done.
  package func next(after step: String, target: String? = nil) -> String? {
    if target == Self.end { return nil }
    if let target, !target.isEmpty { return target }
    guard let index = index(of: step), index + 1 < steps.count else { return nil }
    return steps[index + 1].id
  }

  /// Checks the definition; an error names its field (`definition.steps[2].then_step`). Template,
  /// list, segment and campaign ids are checked to exist by the store.
  package func validate(prefix: String = "definition") throws(SubscriberValidation.Invalid) {
    func invalid(_ field: String, _ message: String) -> SubscriberValidation.Invalid {
      .init(field: "\(prefix).\(field)", message: message)
    }
    // Trigger.
    let kinds = ["list_joined", "event", "inbound", "segment_entered", "engagement"]
    guard kinds.contains(trigger.kind) else {
      throw invalid("trigger.kind", "trigger.kind '\(trigger.kind)' must be one of \(kinds.joined(separator: ", "))")
    }
    let triggerUses: [String: Bool] = [
      "list_id": trigger.listID != nil, "event": trigger.event != nil, "keyword": trigger.keyword != nil, "reply": trigger.reply,
      "segment_id": trigger.segmentID != nil, "engagement": trigger.engagement != nil, "campaign_id": trigger.campaignID != nil,
    ]
    let triggerAllowed: Set<String> =
      switch trigger.kind {
      case "list_joined": ["list_id"]
      case "event": ["event"]
      case "inbound": ["keyword", "reply"]
      case "segment_entered": ["segment_id"]
      default: ["engagement", "campaign_id"]
      }
    if let stray = triggerUses.filter({ $0.value && !triggerAllowed.contains($0.key) }).keys.sorted().first {
      throw invalid("trigger.\(stray)", "trigger.\(stray) does not apply to a \(trigger.kind) trigger")
    }
    switch trigger.kind {
    case "list_joined" where trigger.listID == nil: throw invalid("trigger.list_id", "a list_joined trigger needs list_id")
    case "segment_entered" where trigger.segmentID == nil:
      throw invalid("trigger.segment_id", "a segment_entered trigger needs segment_id")
    case "event":
      guard let event = trigger.event, JourneyEvents.isName(event) else {
        throw invalid("trigger.event", "an event trigger needs event: 1 to 100 of A-Z a-z 0-9 _ . : -")
      }
      guard !event.hasPrefix(JourneyEvents.reservedPrefix) else {
        throw invalid(
          "trigger.event",
          "event names starting with herald. are Herald's own; use the list_joined, inbound, segment_entered or engagement trigger")
      }
    case "engagement":
      guard let engagement = trigger.engagement, JourneyEvents.engagementKinds.contains(engagement) else {
        throw invalid("trigger.engagement", "an engagement trigger needs engagement: opened, clicked, replied or converted")
      }
    case "inbound":
      if let keyword = trigger.keyword,
        keyword.isEmpty || keyword.count > 40 || !keyword.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) })
      {
        throw invalid("trigger.keyword", "trigger.keyword must be one word of 1 to 40 letters and digits")
      }
    default: break
    }
    // Entry rule and goal.
    guard ["once", "once_per_period", "every_time"].contains(entry) else {
      throw invalid("entry", "entry '\(entry)' must be once, once_per_period or every_time")
    }
    if entry == "once_per_period" {
      guard (1...3650).contains(periodDays) else { throw invalid("period_days", "once_per_period needs period_days from 1 to 3,650") }
    } else if periodDays != 0 {
      throw invalid("period_days", "period_days applies to the once_per_period entry only")
    }
    if let goal = goalEvent {
      guard JourneyEvents.isName(goal) else {
        throw invalid("goal_event", "goal_event '\(goal)' is not an event name (1 to 100 of A-Z a-z 0-9 _ . : -)")
      }
      guard JourneyEvents.isKnown(goal) else { throw invalid("goal_event", JourneyEvents.unknownMessage(goal)) }
    }
    // Steps: ids unique, jumps forward to steps that exist.
    guard !steps.isEmpty else { throw invalid("steps", "a journey needs at least one step") }
    guard steps.count <= Self.maxSteps else { throw invalid("steps", "steps holds \(steps.count); at most \(Self.maxSteps)") }
    var seen: [String: Int] = [:]
    for (index, step) in steps.enumerated() {
      let at = "steps[\(index)]"
      guard step.id.utf8.count <= 64, !step.id.isEmpty,
        step.id.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D })
      else { throw invalid("\(at).id", "\(at).id '\(step.id)' must be 1 to 64 of a-z 0-9 _ -") }
      guard step.id != Self.end else {
        throw invalid("\(at).id", "\(at).id 'end' is reserved: a step leading to end completes the journey")
      }
      if let earlier = seen[step.id] { throw invalid("\(at).id", "\(at).id '\(step.id)' is also the id of steps[\(earlier)]") }
      seen[step.id] = index
    }
    for (index, step) in steps.enumerated() {
      let at = "steps[\(index)]"
      guard JourneyStep.kinds.contains(step.kind) else {
        throw invalid("\(at).kind", "\(at).kind '\(step.kind)' must be one of \(JourneyStep.kinds.joined(separator: ", "))")
      }
      func forward(_ target: String?, _ field: String) throws(SubscriberValidation.Invalid) {
        guard let target, !target.isEmpty, target != Self.end else { return }
        guard let place = seen[target] else { throw invalid("\(at).\(field)", "\(at).\(field) '\(target)' is not the id of a step") }
        guard place > index else {
          throw invalid(
            "\(at).\(field)", "\(at).\(field) '\(target)' is steps[\(place)]: a step may only lead to a later one, so each happens once")
        }
      }
      let uses: [String: Bool] = [
        "template_id": step.templateID != nil, "wait_seconds": (step.waitSeconds ?? 0) != 0, "until_time": step.untilTime != nil,
        "until_weekdays": !step.untilWeekdays.isEmpty, "event": step.event != nil, "timeout_seconds": (step.timeoutSeconds ?? 0) != 0,
        "on_event_step": step.onEventStep != nil, "on_timeout_step": step.onTimeoutStep != nil, "conditions": !step.conditions.isEmpty,
        "then_step": step.thenStep != nil, "else_step": step.elseStep != nil, "attributes": step.attributesJSON != nil,
        "track_opens": step.trackOpens, "track_clicks": step.trackClicks, "next_step": step.nextStep != nil,
        "match": step.match != "all",
      ]
      let allowed: Set<String> =
        switch step.kind {
        case "send": ["template_id", "track_opens", "track_clicks", "next_step"]
        case "wait": ["wait_seconds", "until_time", "until_weekdays", "next_step"]
        case "wait_for_event": ["event", "timeout_seconds", "on_event_step", "on_timeout_step"]
        case "branch": ["conditions", "then_step", "else_step", "match"]
        case "update": ["attributes", "next_step"]
        default: []
        }
      if let stray = uses.filter({ $0.value && !allowed.contains($0.key) }).keys.sorted().first {
        throw invalid("\(at).\(stray)", "\(at).\(stray) does not apply to a \(step.kind) step")
      }
      switch step.kind {
      case "send":
        guard step.templateID != nil else { throw invalid("\(at).template_id", "a send step needs template_id") }
      case "wait":
        let seconds = step.waitSeconds ?? 0
        if seconds != 0 {
          guard (60...JourneyStep.longestWait).contains(seconds) else {
            throw invalid("\(at).wait_seconds", "\(at).wait_seconds must be 60 (a minute) to 31,536,000 (365 days)")
          }
          guard step.untilTime == nil && step.untilWeekdays.isEmpty else {
            throw invalid(
              step.untilTime != nil ? "\(at).until_time" : "\(at).until_weekdays",
              "a wait is either wait_seconds or until_time (with until_weekdays), not both")
          }
        } else {
          guard let time = step.untilTime else {
            throw invalid("\(at).wait_seconds", "a wait step needs wait_seconds, or until_time (with until_weekdays)")
          }
          guard JourneyStep.clock(time) != nil else { throw invalid("\(at).until_time", "\(at).until_time '\(time)' must be HH:MM") }
          for (place, day) in step.untilWeekdays.enumerated() where !JourneyStep.weekdays.contains(day) {
            throw invalid("\(at).until_weekdays[\(place)]", "'\(day)' is not one of mon, tue, wed, thu, fri, sat, sun")
          }
        }
      case "wait_for_event":
        guard let event = step.event, JourneyEvents.isName(event) else {
          throw invalid("\(at).event", "a wait_for_event step needs event: 1 to 100 of A-Z a-z 0-9 _ . : -")
        }
        guard JourneyEvents.isKnown(event) else { throw invalid("\(at).event", JourneyEvents.unknownMessage(event)) }
        guard let timeout = step.timeoutSeconds, (60...JourneyStep.longestWait).contains(timeout) else {
          throw invalid("\(at).timeout_seconds", "a wait_for_event step needs timeout_seconds from 60 to 31,536,000 (365 days)")
        }
        try forward(step.onEventStep, "on_event_step")
        try forward(step.onTimeoutStep, "on_timeout_step")
      case "branch":
        guard ["all", "any"].contains(step.match) else { throw invalid("\(at).match", "\(at).match must be all or any") }
        guard !step.conditions.isEmpty else { throw invalid("\(at).conditions", "a branch step needs conditions") }
        var builder = SQLBuilder()
        do {
          _ = try SegmentFilter.compile(
            match: step.match, conditions: step.conditions, into: &builder, journeySteps: Set(steps.filter { $0.kind == "send" }.map(\.id)))
        } catch {
          throw invalid("\(at).\(error.field)", error.message)
        }
        try forward(step.thenStep, "then_step")
        try forward(step.elseStep, "else_step")
      case "update":
        guard let json = step.attributesJSON, case .object(let object) = JSONValue.parse(json), !object.isEmpty else {
          throw invalid("\(at).attributes", "an update step needs attributes: a JSON object with at least one key")
        }
        guard json.utf8.count <= 16_384 else { throw invalid("\(at).attributes", "\(at).attributes is over 16 KiB") }
      default: break
      }
      try forward(step.nextStep, "next_step")
    }
  }
}
