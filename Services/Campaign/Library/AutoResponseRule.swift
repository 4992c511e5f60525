import Foundation
import HeraldCore
import HeraldProtos
import SwiftProtobuf

/// A rule that answers inbound messages (SPEC §11), checked as it is saved: its trigger (a whole
/// keyword, a regular expression, or any reply; optionally only replies to one campaign), its
/// answer (Mustache text with subscriber fields, `inbound.text`, `inbound.subject`,
/// `campaign.name` and its own variables), a delay, a cooldown per sender and a daily cap.
package struct AutoResponseRule: Sendable {
  /// Names every answer may use without declaring them.
  package static let builtIns: Set<String> = ["inbound.text", "inbound.subject", "campaign.name"]

  package var id: UUID
  package var name: String
  package var channel: String
  package var trigger: String
  package var pattern: String
  package var campaignID: UUID?
  package var subject: String
  package var body: String
  package var variables: [TemplateVariable]
  package var delaySeconds: Int
  package var cooldownSeconds: Int
  package var dailyCap: Int
  package var priority: Int
  package var enabled: Bool
  package var createdAt: Date
  let template: MessageTemplate
  /// Compiled once; a Regex is an immutable value, only not declared Sendable.
  nonisolated(unsafe) let expression: Regex<AnyRegexOutput>?
  let keyword: String

  package struct Invalid: Error, Sendable {
    package var field: String
    package var message: String
  }

  package init(
    id: UUID = UUID(), name: String, channel: String, trigger: String, pattern: String, campaignID: UUID?, subject: String,
    body: String, variables: [TemplateVariable], delaySeconds: Int, cooldownSeconds: Int, dailyCap: Int, priority: Int,
    enabled: Bool = true, createdAt: Date = Date()
  ) throws(Invalid) {
    let trimmed = name.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty, trimmed.count <= 200, !trimmed.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
      throw Invalid(field: "name", message: "name must be 1 to 200 characters on one line")
    }
    guard ["sms", "email"].contains(channel) else { throw Invalid(field: "channel", message: "channel must be sms or email") }
    var expression: Regex<AnyRegexOutput>?
    var keyword = ""
    switch trigger {
    case "keyword":
      keyword = KeywordText.normalized(pattern)
      guard !keyword.isEmpty else {
        throw Invalid(field: "pattern", message: "pattern must hold the keyword (letters or digits) for trigger keyword")
      }
    case "regex":
      guard !pattern.isEmpty, pattern.count <= 200 else {
        throw Invalid(field: "pattern", message: "pattern must be a regular expression of 1 to 200 characters for trigger regex")
      }
      do {
        expression = try Regex(pattern).ignoresCase()
      } catch {
        throw Invalid(field: "pattern", message: "pattern is not a regular expression: \(error)")
      }
    case "any":
      guard pattern.isEmpty else { throw Invalid(field: "pattern", message: "pattern must be empty for trigger any") }
    default:
      throw Invalid(field: "trigger", message: "trigger must be keyword, regex or any")
    }
    guard channel == "email" || subject.isEmpty else {
      throw Invalid(field: "subject", message: "subject is for e-mail answers only")
    }
    guard body.count <= 4000 else { throw Invalid(field: "body", message: "body must be at most 4,000 characters") }
    guard (0...604_800).contains(delaySeconds) else {
      throw Invalid(field: "delay_seconds", message: "delay_seconds must be from 0 to 604,800")
    }
    guard (0...31_536_000).contains(cooldownSeconds) else {
      throw Invalid(field: "cooldown_seconds", message: "cooldown_seconds must be from 0 to 31,536,000 (0 means 86,400)")
    }
    guard (0...1_000_000).contains(dailyCap) else {
      throw Invalid(field: "daily_cap", message: "daily_cap must be from 0 to 1,000,000 (0 means 1,000)")
    }
    guard (-1000...1000).contains(priority) else { throw Invalid(field: "priority", message: "priority must be from -1,000 to 1,000") }
    do {
      // An answer is text on either channel (an e-mail answer is a plain text/plain message).
      template = try MessageTemplate(
        channel: channel, format: "text", subject: channel == "email" ? (subject.isEmpty ? "{{inbound.subject}}" : subject) : "",
        body: body, variables: variables, builtIns: Self.builtIns)
    } catch {
      throw Invalid(field: error.field, message: error.message)
    }
    self.id = id
    self.name = trimmed
    self.channel = channel
    self.trigger = trigger
    self.pattern = pattern
    self.campaignID = campaignID
    self.subject = subject
    self.body = body
    self.variables = variables
    self.delaySeconds = delaySeconds
    self.cooldownSeconds = cooldownSeconds == 0 ? 86_400 : cooldownSeconds
    self.dailyCap = dailyCap == 0 ? 1000 : dailyCap
    self.priority = priority
    self.enabled = enabled
    self.createdAt = createdAt
    self.expression = expression
    self.keyword = keyword
  }

  /// Whether it answers a message on `channel` with `text`, replying to `campaign`.
  package func matches(channel: String, text: String, campaign: UUID?) -> Bool {
    guard enabled, channel == self.channel, campaignID == nil || campaignID == campaign else { return false }
    switch trigger {
    case "keyword": return KeywordText.normalized(text) == keyword
    case "regex": return expression.map { (try? $0.firstMatch(in: text)) != nil } ?? false
    default: return true
    }
  }

  /// The answer for `subscriber` (its fields; nil: none known) to a message with `text` and
  /// `subject`, replying to the campaign named `campaignName`.
  package func render(
    subscriber: SubscriberRecord?, text: String, subject: String, campaignName: String
  ) throws(SubscriberValidation.Invalid) -> (subject: String, body: String) {
    var values = subscriber.map(MessageTemplate.values(of:)) ?? [:]
    values["inbound.text"] = text
    values["inbound.subject"] = subject.isEmpty ? "" : (subject.lowercased().hasPrefix("re:") ? subject : "Re: \(subject)")
    values["campaign.name"] = campaignName
    return try template.render(values)
  }

  package var message: Herald_Campaign_V1_AutoResponseRule {
    var message = Herald_Campaign_V1_AutoResponseRule()
    message.id = id.lowercasedString
    message.name = name
    message.channel = channel
    message.trigger = trigger
    message.pattern = pattern
    message.campaignID = campaignID?.lowercasedString ?? ""
    message.subject = subject
    message.body = body
    message.variables = variables.map { variable in
      var item = Herald_Campaign_V1_TemplateVariable()
      item.name = variable.name
      if let fallback = variable.defaultValue { item.defaultValue = fallback }
      return item
    }
    message.delaySeconds = Int32(delaySeconds)
    message.cooldownSeconds = Int32(cooldownSeconds)
    message.dailyCap = Int32(dailyCap)
    message.priority = Int32(priority)
    message.disabled = !enabled
    message.createdAt = .init(date: createdAt)
    return message
  }
}
