import Foundation

/// Times as the Airtable-style API writes them: ISO 8601 in UTC with milliseconds
/// (`2026-12-01T07:31:41.879Z`); read with or without the fraction.
package enum ISOTime {
  package static func format(_ date: Date) -> String {
    date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
      .replacingOccurrences(of: "+0000", with: "Z")
  }

  package static func parse(_ text: String) -> Date? {
    (try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))
      ?? (try? Date(text, strategy: .iso8601))
  }
}
