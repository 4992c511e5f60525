import Foundation

/// The deliverability guard's thresholds (SPEC §10), for a campaign (`HERALD_CAMPAIGN_GUARD_*`)
/// and for a sending domain (`HERALD_DELIVERY_GUARD_*`): complaints and hard bounces per message
/// sent, judged once enough was sent for a rate to mean something.
package struct DeliverabilityThresholds: Sendable, Equatable {
  /// Complaints per message sent above which sending stops (0.3 %: the bulk-sender limit of
  /// Gmail and Yahoo).
  package var complaintRate = 0.003
  /// Hard bounces per message sent above which sending stops (5 %); soft bounces do not count.
  package var bounceRate = 0.05
  /// Messages that must have been sent before the rates are judged.
  package var minimumSent: Int64 = 500

  package init() {}

  /// Reads `PREFIX_COMPLAINT_RATE`, `PREFIX_BOUNCE_RATE` and `PREFIX_MIN_SENT`.
  package static func load(_ settings: Settings, prefix: String) throws -> DeliverabilityThresholds {
    var result = DeliverabilityThresholds()
    func rate(_ name: String, _ value: Double) throws -> Double {
      guard let text = settings.optionalString(name) else { return value }
      guard let parsed = Double(text), parsed > 0, parsed < 1 else {
        throw ConfigurationError.malformed(variable: name, value: "'\(text)'", expected: "a fraction between 0 and 1, e.g. 0.003 for 0.3 %")
      }
      return parsed
    }
    result.complaintRate = try rate("\(prefix)_COMPLAINT_RATE", result.complaintRate)
    result.bounceRate = try rate("\(prefix)_BOUNCE_RATE", result.bounceRate)
    result.minimumSent = Int64(try settings.int("\(prefix)_MIN_SENT", default: Int(result.minimumSent), range: 1...100_000_000))
    return result
  }

  /// Why these counts pass a threshold, with the figures ("complaint rate 0.33 % (2 of 600 sent)
  /// is above 0.30 %"); nil when they do not, or too little was sent.
  package func breach(sent: Int64, complained: Int64, hardBounced: Int64) -> String? {
    guard sent >= minimumSent, sent > 0 else { return nil }
    func percent(_ value: Double) -> String { String(format: "%.2f", 100 * value) }
    func reason(_ what: String, _ count: Int64, _ limit: Double) -> String? {
      let rate = Double(count) / Double(sent)
      guard rate > limit else { return nil }
      return "\(what) \(percent(rate)) % (\(count) of \(sent) sent) is above \(percent(limit)) %"
    }
    return reason("complaint rate", complained, complaintRate) ?? reason("hard-bounce rate", hardBounced, bounceRate)
  }
}

/// What a campaign's `status_reason` starts with when the deliverability guard paused it: the
/// campaign service writes it, verification finds such campaigns by it.
package enum DeliverabilityGuardReason {
  package static let prefix = "paused by the deliverability guard: "
}
