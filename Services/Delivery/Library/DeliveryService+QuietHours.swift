import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit
import PostgresNIO
import Synchronization

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
    var windows: [QuietWindow: QuietWindow?] = [:]
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
      result[index].quiet = window.wholeDay || zones.isEmpty ? nil : QueuedMessage.Quiet(window: window, zones: zones)
    }
    return result
  }
}

extension DeliveryStore {
  private static let zoneNames = Mutex<Set<String>?>(nil)

  /// The time zones PostgreSQL knows (read once per process): only those go into the claim's
  /// `AT TIME ZONE`, which fails on any other.
  func timeZoneNames() async throws -> Set<String> {
    if let names = Self.zoneNames.withLock({ $0 }) { return names }
    var names = Set<String>()
    for try await name in try await client.query("SELECT name FROM pg_timezone_names", logger: logger).decode(String.self) {
      names.insert(name)
    }
    Self.zoneNames.withLock { $0 = names }
    return names
  }
}
