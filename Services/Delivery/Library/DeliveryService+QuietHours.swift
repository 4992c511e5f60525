import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// Quiet hours (SPEC §11): an SMS is delivered only inside its window of the recipient's local
/// time. The window is the installation's (HERALD_SMS_QUIET_HOURS), narrowed by the message's own
/// (its campaign's) and by every enabled SMS provider's; the time zone is the one given (the
/// subscriber's), else those of the phone number's country and area code. The claim defers a
/// message due outside it to the window's next start (`DeliveryStore.claim`).
extension DeliveryService {
  /// Completes the quiet hours of the SMS among `messages`; `field(i)` names message i's fields
  /// (a transactional message with a time zone PostgreSQL does not know is refused naming it).
  func withQuietHours(_ messages: [QueuedMessage], field: (Int) -> String = { _ in "" }) async throws
    -> [QueuedMessage]
  {
    guard messages.contains(where: { $0.quiet != nil }) else { return messages }
    var base: QuietWindow? = smsQuietHours
    var sources = ["the installation's \(smsQuietHours)"]
    for entry in providers.all where entry.config.channel == "sms" && !entry.config.disabled && entry.config.definition.hasQuietHours {
      guard let window = QuietWindow(entry.config.definition.quietHours) else { continue }
      base = base.flatMap { $0.intersection(window) }
      sources.append("provider \(entry.config.name)'s \(window)")
    }
    let known = try await store.timeZoneNames()
    let now = Date()
    var windows: [QuietWindow: QuietWindow?] = [:]
    // When each (zones, window, due minute) first opens: a campaign's texts share a few of them.
    var openings: [String: Date?] = [:]
    var result = messages
    for index in result.indices {
      guard let quiet = result[index].quiet else { continue }
      let window: QuietWindow?
      if let cached = windows[quiet.window] {
        window = cached
      } else {
        window = base.flatMap { $0.intersection(quiet.window) }
        windows[quiet.window] = window
      }
      guard let window else {
        result[index].quiet = nil
        result[index].undeliverable =
          "its quiet hours leave no time of day to deliver: \((sources + (quiet.window.wholeDay ? [] : ["its own \(quiet.window)"])).joined(separator: ", "))"
        continue
      }
      var zones = quiet.zones.filter(known.contains)
      if zones.isEmpty, let given = quiet.zones.first, result[index].campaignID == nil {
        let prefix = field(index)
        let name = prefix.isEmpty ? "time_zone" : "\(prefix).time_zone"
        throw RPCError.field(name, .invalidArgument, "\(name) '\(given)' is not a time zone (an IANA name such as America/Chicago)")
      }
      // A campaign's subscriber with a time zone nobody knows: the number's, as for one without.
      if zones.isEmpty { zones = (PhoneTimeZones.zones(of: result[index].recipient) ?? []).filter(known.contains) }
      guard !window.wholeDay, !zones.isEmpty else {
        result[index].quiet = nil
        continue
      }
      result[index].quiet = QueuedMessage.Quiet(window: window, zones: zones)
      // Queued for when the window is open in every zone, so the claim need not defer it at night.
      let due = max(result[index].notBefore ?? now, now)
      let key = "\(zones.joined(separator: ","))|\(window.start)-\(window.end)|\(Int(due.timeIntervalSince1970 / 60))"
      let opening: Date?
      if let cached = openings[key] {
        opening = cached
      } else {
        opening = window.firstOpening(in: zones.compactMap(TimeZone.init(identifier:)), from: due)
        openings[key] = opening
      }
      let place = zones.count == 1 ? zones[0] : "\(zones.count) time zones of the number's country"
      guard let opening else {
        result[index].quiet = nil
        result[index].undeliverable =
          "its quiet hours (\(window)) are never open at once in all of \(place) (\(zones.joined(separator: ", "))): give the subscriber a time_zone attribute"
        continue
      }
      if opening.timeIntervalSince(due) >= 60 {
        result[index].notBefore = opening
        result[index].note = "quiet hours (\(window) in \(place)): waits until \(opening.formatted(.iso8601))"
      }
    }
    return result
  }
}
