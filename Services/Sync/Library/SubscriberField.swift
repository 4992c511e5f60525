import Foundation
import HeraldCore
import HeraldProtos
import SwiftProtobuf

/// The subscriber fields a remote field can map to, and how their values look on each side.
/// Values are JSON on both sides: strings, booleans for consent, any JSON for an attribute, and
/// null for "empty" (Airtable leaves empty values out of a record).
package enum SubscriberField {
  /// Fields synced both ways.
  package static let synced: Set<String> = [
    "email", "phone", "first_name", "last_name", "email_subscribed", "sms_subscribed", "whatsapp", "whatsapp_subscribed",
  ]
  /// Fields Herald computes and writes to the remote table only.
  package static let pushOnly: Set<String> = ["engagement_status", "engagement_score", "last_messaged_at"]
  /// Fields that identify a subscriber: a new remote record is matched to a local one on these.
  static let keys = ["email", "phone"]

  package static func isValid(_ field: String) -> Bool {
    synced.contains(field) || pushOnly.contains(field) || attribute(field) != nil
  }

  /// A value of a key field as records are matched to subscribers on it: an e-mail trimmed and
  /// lowercased, a phone without spaces, dashes, dots or brackets.
  static func matchKey(_ value: String, field: String) -> String {
    field == "email" ? value.trimmingCharacters(in: .whitespaces).lowercased() : value.filter { !" -.()".contains($0) }
  }

  /// `attributes.<name>` → name.
  package static func attribute(_ field: String) -> String? {
    guard field.hasPrefix("attributes."), field.count > "attributes.".count else { return nil }
    return String(field.dropFirst("attributes.".count))
  }

  /// A remote value as this field holds it: empty → null; a consent checkbox left out → false.
  static func remote(_ value: JSONValue?, field: String) -> JSONValue {
    let value = value ?? .null
    if field.hasSuffix("_subscribed") { return value == .null ? .bool(false) : value }
    if value == .string("") || value == .array([]) { return .null }
    return value
  }

  /// The subscriber's value of `field`.
  static func local(
    _ subscriber: Herald_Campaign_V1_Subscriber, engagement: Herald_Campaign_V1_SubscriberEngagement?, field: String
  ) -> JSONValue {
    func text(_ value: String) -> JSONValue { value.isEmpty ? .null : .string(value) }
    switch field {
    case "email": return text(subscriber.email)
    case "phone": return text(subscriber.phone)
    case "whatsapp": return text(subscriber.whatsapp)
    case "whatsapp_subscribed": return .bool(subscriber.whatsappConsent.subscribed)
    case "first_name": return text(subscriber.firstName)
    case "last_name": return text(subscriber.lastName)
    case "email_subscribed": return .bool(subscriber.emailConsent.subscribed)
    case "sms_subscribed": return .bool(subscriber.smsConsent.subscribed)
    case "engagement_score": return .number(Double(engagement?.score ?? 0))
    case "engagement_status": return .string(engagementStatus(engagement))
    case "last_messaged_at":
      guard let engagement, engagement.hasLastMessagedAt else { return .null }
      return .string(ISOTime.format(engagement.lastMessagedAt.date))
    default:
      guard let name = attribute(field) else { return .null }
      let attributes = JSONValue.parse(subscriber.attributesJson)?.object ?? [:]
      return attributes[name] ?? .null
    }
  }

  /// new (never messaged), bounced, complained, engaged (score ≥ 50), active (some engagement)
  /// or dormant (messaged, never engaged).
  static func engagementStatus(_ engagement: Herald_Campaign_V1_SubscriberEngagement?) -> String {
    guard let engagement, engagement.delivered + engagement.opened + engagement.clicked + engagement.bounced + engagement.complained > 0
    else { return "new" }
    if engagement.complained > 0 { return "complained" }
    if engagement.bounced > 0 && engagement.delivered == 0 { return "bounced" }
    if engagement.score >= 50 { return "engaged" }
    if engagement.score > 0 { return "active" }
    return "dormant"
  }

  /// Whether two values mean the same (e-mail case, spacing, phone punctuation aside).
  static func equivalent(_ a: JSONValue, _ b: JSONValue, field: String) -> Bool {
    guard case .string(let x) = a, case .string(let y) = b else { return a == b }
    func normal(_ text: String) -> String {
      let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
      switch field {
      case "email": return trimmed.lowercased()
      case "phone", "whatsapp": return trimmed.filter { !" -.()".contains($0) }
      default: return trimmed
      }
    }
    return normal(x) == normal(y)
  }
}
