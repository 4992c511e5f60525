import Foundation
import HeraldCore

/// Compiles segment conditions to a SQL predicate over `campaign.subscribers s`, checking each
/// condition as it goes; an error names the condition's field (`conditions[2].op`).
package enum SegmentFilter {
  static let textColumns: Set<String> = ["email", "phone", "first_name", "last_name", "status"]
  static let boolColumns: Set<String> = ["email_subscribed", "sms_subscribed"]
  static let operators = ["eq", "neq", "contains", "gt", "gte", "lt", "lte", "in", "exists", "not_exists"]
  static let comparisons = ["gt": ">", "gte": ">=", "lt": "<", "lte": "<="]
  package static let maxConditions = 50

  /// The SQL predicate, and the list ids it refers to (which must exist).
  /// `journeySteps`: for a journey's branch, the ids of its send steps; the predicate may then also use
  /// `event.<name>` (over `e.context`, the enrolment's) and `engagement.opened`,
  /// `engagement.clicked`, `engagement.<step>.opened|clicked` (its sends' engagement).
  package static func compile(
    match: String, conditions: [SegmentCondition], into builder: inout SQLBuilder, journeySteps: Set<String>? = nil
  ) throws(SubscriberValidation.Invalid) -> (sql: String, lists: [UUID]) {
    guard match == "all" || match == "any" else {
      throw .init(field: "match", message: "match '\(match)' must be all or any")
    }
    guard !conditions.isEmpty else { throw .init(field: "conditions", message: "conditions is empty") }
    guard conditions.count <= maxConditions else {
      throw .init(field: "conditions", message: "conditions holds \(conditions.count); at most \(maxConditions)")
    }
    var parts: [String] = []
    var lists: [UUID] = []
    for (index, condition) in conditions.enumerated() {
      let (sql, list) = try compile(condition, at: "conditions[\(index)]", into: &builder, journeySteps: journeySteps)
      parts.append("(\(sql))")
      if let list { lists.append(list) }
    }
    return (parts.joined(separator: match == "all" ? " AND " : " OR "), lists)
  }

  private static func compile(
    _ condition: SegmentCondition, at path: String, into builder: inout SQLBuilder, journeySteps: Set<String>?
  ) throws(SubscriberValidation.Invalid) -> (String, UUID?) {
    let field = condition.field
    let op = condition.op
    guard operators.contains(op) else {
      throw .init(field: "\(path).op", message: "op '\(op)' must be one of \(operators.joined(separator: ", "))")
    }
    let needsValue = op != "exists" && op != "not_exists"
    var value: JSONValue?
    if needsValue {
      guard let parsed = JSONValue.parse(condition.valueJSON) else {
        throw .init(field: "\(path).value", message: "value '\(condition.valueJSON)' is not JSON")
      }
      value = parsed
    } else if !condition.valueJSON.isEmpty {
      throw .init(field: "\(path).value", message: "op \(op) takes no value")
    }
    func refuse() -> SubscriberValidation.Invalid {
      .init(field: "\(path).op", message: "op \(op) does not apply to field \(field)")
    }
    func wrongType(_ expected: String) -> SubscriberValidation.Invalid {
      .init(field: "\(path).value", message: "value for \(field) \(op) must be \(expected), not \(value?.typeName ?? "absent")")
    }

    if textColumns.contains(field) {
      let column = "s.\(field)"
      switch (op, value) {
      case ("eq", .string(let text)): return ("\(column) = \(builder.bind(field == "email" ? text.lowercased() : text))", nil)
      case ("neq", .string(let text)):
        return ("\(column) IS DISTINCT FROM \(builder.bind(field == "email" ? text.lowercased() : text))", nil)
      case ("contains", .string(let text)): return ("strpos(lower(coalesce(\(column), '')), lower(\(builder.bind(text)))) > 0", nil)
      case ("in", .array(let items)):
        let texts = items.compactMap { if case .string(let text) = $0 { field == "email" ? text.lowercased() : text } else { nil } }
        guard texts.count == items.count, !texts.isEmpty else { throw wrongType("a non-empty array of strings") }
        return ("\(column) = ANY(\(builder.bind(texts))::text[])", nil)
      case ("exists", _): return ("coalesce(\(column), '') <> ''", nil)
      case ("not_exists", _): return ("coalesce(\(column), '') = ''", nil)
      case ("eq", _), ("neq", _), ("contains", _): throw wrongType("a string")
      case ("in", _): throw wrongType("a non-empty array of strings")
      default: throw refuse()
      }
    }
    if boolColumns.contains(field) {
      guard op == "eq" || op == "neq" else { throw refuse() }
      guard case .bool(let flag) = value else { throw wrongType("true or false") }
      return ("s.\(field) = \(builder.bind(op == "eq" ? flag : !flag))", nil)
    }
    if field == "created_at" {
      guard let comparison = comparisons[op] else { throw refuse() }
      guard case .string(let text) = value, let date = try? Date(text, strategy: .iso8601) else {
        throw wrongType("an ISO 8601 time such as \"2026-01-31T00:00:00Z\"")
      }
      return ("s.created_at \(comparison) \(builder.bind(date))", nil)
    }
    if field == "list" {
      guard op == "eq" || op == "neq" else { throw refuse() }
      guard case .string(let text) = value, let list = UUID(text: text) else { throw wrongType("a list id (UUID string)") }
      let member = "EXISTS (SELECT 1 FROM campaign.list_members m WHERE m.list_id = \(builder.bind(list)) AND m.subscriber_id = s.id)"
      return (op == "eq" ? member : "NOT \(member)", list)
    }
    if let journeySteps, field.hasPrefix("engagement.") {
      let parts = field.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
      guard parts.count == 2 || parts.count == 3, let what = parts.last, what == "opened" || what == "clicked" else {
        throw .init(
          field: "\(path).field",
          message: "field '\(field)' must be engagement.opened, engagement.clicked or engagement.<step>.opened|clicked")
      }
      if parts.count == 3 && !journeySteps.contains(parts[1]) {
        throw .init(field: "\(path).field", message: "field '\(field)' names step '\(parts[1])', which is not a send step of the journey")
      }
      guard op == "eq" || op == "neq" else { throw refuse() }
      guard case .bool(let flag) = value else { throw wrongType("true or false") }
      let step = parts.count == 3 ? " AND d.step = \(builder.bind(parts[1]))" : ""
      let engaged =
        "EXISTS (SELECT 1 FROM campaign.journey_steps_done d WHERE d.enrolment_id = e.id AND d.\(what)_at IS NOT NULL\(step))"
      return ((op == "eq") == flag ? engaged : "NOT \(engaged)", nil)
    }
    let json: (column: String, name: String)? =
      if field.hasPrefix("attributes.") {
        ("s.attributes", String(field.dropFirst("attributes.".count)))
      } else if journeySteps != nil, field.hasPrefix("event.") {
        ("e.context", String(field.dropFirst("event.".count)))
      } else {
        nil
      }
    if let (column, key) = json {
      guard !key.isEmpty, key.utf8.count <= 200 else {
        throw .init(field: "\(path).field", message: "field '\(field)' needs a name after its first '.'")
      }
      let attribute = "\(column) -> \(builder.bind(key))"
      switch (op, value) {
      case ("exists", _): return ("\(column) ? \(builder.bind(key))", nil)
      case ("not_exists", _): return ("NOT (\(column) ? \(builder.bind(key)))", nil)
      case ("eq", .some), ("neq", .some):
        let json = builder.bind(condition.valueJSON)
        return (op == "eq" ? "\(attribute) = \(json)::jsonb" : "(\(attribute)) IS DISTINCT FROM \(json)::jsonb", nil)
      case ("contains", .string(let text)):
        return ("strpos(lower(\(column) ->> \(builder.bind(key))), lower(\(builder.bind(text)))) > 0", nil)
      case ("contains", _): throw wrongType("a string")
      case ("in", .array(let items)):
        guard !items.isEmpty else { throw wrongType("a non-empty array") }
        return ("\(builder.bind(condition.valueJSON))::jsonb @> jsonb_build_array(\(attribute))", nil)
      case ("in", _): throw wrongType("a non-empty array")
      case (let op, .number), (let op, .string):
        guard let comparison = comparisons[op] else { throw refuse() }
        // Ordering compares like with like: numbers as numbers, strings as strings.
        let json = builder.bind(condition.valueJSON)
        return ("jsonb_typeof(\(attribute)) = jsonb_typeof(\(json)::jsonb) AND \(attribute) \(comparison) \(json)::jsonb", nil)
      default: throw wrongType("a number or a string")
      }
    }
    throw .init(
      field: "\(path).field",
      message: "field '\(field)' is not known (use email, phone, first_name, last_name, status, email_subscribed, "
        + "sms_subscribed, created_at, list or attributes.<name>"
        + (journeySteps == nil ? ")" : "; in a journey also event.<name>, engagement.opened, engagement.clicked)"))
  }
}
