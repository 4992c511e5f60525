import Foundation
import HeraldCore
import HeraldProtos

extension QuietWindow {
  /// A window as the API gives it; nil when a time is malformed.
  package init?(_ hours: Herald_Delivery_V1_QuietHours) {
    guard let start = Self.minutes(hours.start, end: false), let end = Self.minutes(hours.end, end: true) else { return nil }
    self.init(start: start, end: end)
  }
}

extension QuietWindow {
  /// The first instant at or after `moment` at which it holds in every one of `zones`, looked for
  /// over the next eight days; nil when the zones never share a minute of it (a window narrower
  /// than the spread of their clocks). Each step moves to where the window next opens in a zone
  /// that is outside it, so a handful of steps decide.
  func firstOpening(in zones: [TimeZone], from moment: Date) -> Date? {
    guard !wholeDay, !zones.isEmpty else { return moment }
    let limit = moment.addingTimeInterval(8 * 86_400)
    var candidate = moment
    for _ in 0..<64 {
      var latest = candidate
      for zone in zones {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.hour, .minute], from: candidate)
        guard !contains((parts.hour ?? 0) * 60 + (parts.minute ?? 0)) else { continue }
        // Where the window next opens in this zone (its start, at or after the candidate).
        guard
          let opening = calendar.nextDate(
            after: candidate.addingTimeInterval(-1), matching: DateComponents(hour: start / 60, minute: start % 60),
            matchingPolicy: .nextTime)
        else { return nil }
        latest = max(latest, opening)
      }
      if latest == candidate { return candidate }
      guard latest < limit else { return nil }
      candidate = latest
    }
    return nil
  }
}
