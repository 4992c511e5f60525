import SwiftProtobuf

extension Google_Protobuf_Timestamp {
  /// The latest time a Timestamp may hold (9999-12-31T23:59:59Z): its JSON form, RFC 3339, has no
  /// later one, so the gateway could not write it.
  static let latestSeconds: Double = 253_402_300_799

  /// `seconds` since 1970 within 0001-01-01 … 9999-12-31: a reset that far off (a huge hits_addend
  /// against a small yearly limit) says "not before the end of time", not an error.
  init(clampingTimeIntervalSince1970 seconds: Double) {
    let earliest: Double = -62_135_596_800
    self.init(roundingTimeIntervalSince1970: seconds.isNaN ? 0 : min(max(seconds, earliest), Self.latestSeconds))
  }
}
