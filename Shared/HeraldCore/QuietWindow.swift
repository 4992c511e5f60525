import Foundation

/// A daily window of local time in which SMS may be delivered (SPEC §11): minutes after midnight,
/// from `start` up to `end`; an end before the start runs past midnight, an end equal to the start
/// is the whole day. Delivery applies it; the campaign service checks a campaign's.
package struct QuietWindow: Sendable, Hashable, CustomStringConvertible {
  package var start: Int
  package var end: Int

  /// 08:00–21:00, the TCPA's hours.
  package static let standard = QuietWindow(start: 8 * 60, end: 21 * 60)

  package init(start: Int, end: Int) {
    self.start = start
    self.end = end
  }

  /// "HH:MM" (00:00–23:59; the end also 24:00, which is midnight); nil when malformed.
  package static func minutes(_ text: String, end: Bool) -> Int? {
    if end, text == "24:00" { return 0 }
    guard text.wholeMatch(of: /([01][0-9]|2[0-3]):[0-5][0-9]/) != nil else { return nil }
    let parts = text.split(separator: ":")
    return Int(parts[0])! * 60 + Int(parts[1])!
  }

  /// The start and end of "08:00-21:00" as written; nil when it is not two times.
  package static func parts(of text: String) -> (start: String, end: String)? {
    let parts = text.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
    guard parts.count == 2, minutes(parts[0], end: false) != nil, minutes(parts[1], end: true) != nil else { return nil }
    return (parts[0], parts[1])
  }

  /// "08:00-21:00" (HERALD_SMS_QUIET_HOURS, a campaign's stored window); nil when malformed.
  package init?(text: String) {
    let parts = text.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
    guard parts.count == 2, let start = Self.minutes(parts[0], end: false), let end = Self.minutes(parts[1], end: true) else {
      return nil
    }
    self.init(start: start, end: end)
  }

  package var wholeDay: Bool { start == end }

  package func contains(_ minute: Int) -> Bool {
    if wholeDay { return true }
    return start < end ? (start..<end).contains(minute) : minute >= start || minute < end
  }

  /// The longest stretch of the day inside both windows (stricter than each); nil when they share
  /// no minute.
  package func intersection(_ other: QuietWindow) -> QuietWindow? {
    if wholeDay { return other }
    if other.wholeDay { return self }
    let inside = (0..<1440).map { contains($0) && other.contains($0) }
    guard inside.contains(true) else { return nil }
    // Runs of allowed minutes, on a circle: start from a minute that is not allowed.
    guard let gap = inside.firstIndex(of: false) else { return QuietWindow(start: 0, end: 0) }
    var best = (start: 0, length: 0)
    var run: (start: Int, length: Int)?
    for step in 1...1440 {
      let minute = (gap + step) % 1440
      if inside[minute] {
        run = run.map { ($0.start, $0.length + 1) } ?? (minute, 1)
      } else if let current = run {
        if current.length > best.length { best = current }
        run = nil
      }
    }
    return QuietWindow(start: best.start, end: (best.start + best.length) % 1440)
  }

  static func text(_ minutes: Int) -> String { String(format: "%02d:%02d", minutes / 60, minutes % 60) }
  package var description: String { wholeDay ? "all day" : "\(Self.text(start))–\(Self.text(end))" }
}
