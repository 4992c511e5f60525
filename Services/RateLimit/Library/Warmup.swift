import Foundation

extension LimitDefinition {
  /// Daily volumes from a start date (UTC): day 0 is the start date.
  package struct Warmup: Sendable, Equatable {
    /// Seconds since 1970 of the start date's midnight (UTC).
    package var start: Double
    package var dailyVolumes: [Int64]

    package var startDate: String {
      Self.dayFormat.string(from: Date(timeIntervalSince1970: start))
    }

    package static let dayFormat: DateFormatter = {
      let format = DateFormatter()
      format.locale = Locale(identifier: "en_US_POSIX")
      format.timeZone = TimeZone(identifier: "UTC")
      format.dateFormat = "yyyy-MM-dd"
      return format
    }()

    /// The volume of the day holding `now`: nothing before the start, the last after the end.
    package func volume(at now: Double) -> Int64 {
      let day = Int(((now - start) / 86400).rounded(.down))
      guard day >= 0 else { return 0 }
      return dailyVolumes[min(day, dailyVolumes.count - 1)]
    }
  }
}
