import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit

extension LimitDefinition {
  /// Checks a limit from the API or the limits file; errors name the field under `prefix`.
  package init(validating request: Herald_Ratelimit_V1_PutLimitRequest, field prefix: String = "") throws(RPCError) {
    func path(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
    self.descriptors = try Self.validated(request.descriptors, field: path("descriptors"), wildcards: true)
    let warmup = request.hasWarmup ? request.warmup : nil
    let unit: Unit
    switch request.unit {
    case .second: unit = .second
    case .minute: unit = .minute
    case .hour: unit = .hour
    case .day: unit = .day
    case .unspecified where warmup != nil: unit = .day
    case .unspecified, .UNRECOGNIZED:
      throw .field(path("unit"), .invalidArgument, "\(path("unit")) must be UNIT_SECOND, UNIT_MINUTE, UNIT_HOUR or UNIT_DAY")
    }
    let algorithm: Algorithm
    switch request.algorithm {
    case .tokenBucket, .unspecified: algorithm = warmup == nil ? .tokenBucket : .fixedWindow
    case .slidingWindow: algorithm = .slidingWindow
    case .fixedWindow: algorithm = .fixedWindow
    case .UNRECOGNIZED(let value): throw .field(path("algorithm"), .invalidArgument, "\(path("algorithm")) \(value) is not known")
    }
    guard request.burst >= 0 else { throw .field(path("burst"), .invalidArgument, "\(path("burst")) must not be negative") }
    if let warmup {
      for (name, value) in [("requests_per_unit", request.requestsPerUnit), ("burst", request.burst)] where value != 0 {
        throw .field(path(name), .invalidArgument, "\(path(name)) does not go with a warm-up schedule: its daily_volumes are the caps")
      }
      guard unit == .day, algorithm == .fixedWindow else {
        throw .field(
          path("warmup"), .invalidArgument,
          "\(path("warmup")) caps days: leave unit and algorithm out (or UNIT_DAY, ALGORITHM_FIXED_WINDOW)")
      }
      guard let start = Warmup.dayFormat.date(from: warmup.startDate), Warmup.dayFormat.string(from: start) == warmup.startDate else {
        throw .field(
          path("warmup.start_date"), .invalidArgument, "\(path("warmup.start_date")) '\(warmup.startDate)' is not a date like 2026-11-23")
      }
      guard !warmup.dailyVolumes.isEmpty, warmup.dailyVolumes.count <= 366 else {
        throw .field(path("warmup.daily_volumes"), .invalidArgument, "\(path("warmup.daily_volumes")) must hold 1 to 366 days")
      }
      if let bad = warmup.dailyVolumes.firstIndex(where: { $0 < 0 }) {
        throw .field(path("warmup.daily_volumes[\(bad)]"), .invalidArgument, "\(path("warmup.daily_volumes[\(bad)]")) must not be negative")
      }
      self.warmup = Warmup(start: start.timeIntervalSince1970, dailyVolumes: warmup.dailyVolumes)
      self.requestsPerUnit = warmup.dailyVolumes.max() ?? 0
      self.burst = 0
    } else {
      guard request.requestsPerUnit > 0 else {
        throw .field(path("requests_per_unit"), .invalidArgument, "\(path("requests_per_unit")) must be positive")
      }
      guard algorithm == .tokenBucket || request.burst == 0 else {
        throw .field(path("burst"), .invalidArgument, "\(path("burst")) applies to the token bucket only")
      }
      self.warmup = nil
      self.requestsPerUnit = request.requestsPerUnit
      self.burst = algorithm == .tokenBucket && request.burst == 0 ? request.requestsPerUnit : request.burst
    }
    self.unit = unit
    self.algorithm = algorithm
    self.updatedAt = nil
  }

  /// Checks descriptors (of a limit, where `*` may stand for any value, or of a check) and sorts
  /// them by key.
  package static func validated(
    _ descriptors: [Herald_Ratelimit_V1_Descriptor], field: String, wildcards: Bool
  ) throws(RPCError) -> [(key: String, value: String)] {
    guard !descriptors.isEmpty else {
      throw .field(field, .invalidArgument, "\(field) is empty: at least one descriptor is needed")
    }
    guard descriptors.count <= 16 else { throw .field(field, .invalidArgument, "\(field) holds more than 16 descriptors") }
    var seen = Set<String>()
    for (index, descriptor) in descriptors.enumerated() {
      for (part, text) in [("key", descriptor.key), ("value", descriptor.value)] {
        guard !text.isEmpty, text.utf8.count <= 128, !text.contains("="), !text.contains(","),
          !text.contains(where: \.isWhitespace), wildcards || part == "key" || text != "*"
        else {
          throw .field(
            "\(field)[\(index)].\(part)", .invalidArgument,
            "\(field)[\(index)].\(part) '\(text)' must be 1 to 128 characters without '=', ',' or spaces"
              + (wildcards ? "" : ", and not '*'"))
        }
      }
      guard seen.insert(descriptor.key).inserted else {
        throw .field("\(field)[\(index)].key", .invalidArgument, "\(field)[\(index)].key '\(descriptor.key)' is repeated")
      }
    }
    return descriptors.map { ($0.key, $0.value) }.sorted { $0.key < $1.key }
  }

  /// Reads and checks the limits file (protobuf JSON of `LimitsFile`); the error names the file
  /// and the entry.
  package static func loadFile(_ path: String) throws(ConfigFileError) -> [LimitDefinition] {
    let kind = "the limits file"
    let file = try ConfigFile.load(Herald_Ratelimit_V1_LimitsFile.self, path: path, kind: kind)
    var seen = Set<String>()
    return try ConfigFile.entries(file.limits, path: path, kind: kind) { (index, request) throws(RPCError) in
      let limit = try LimitDefinition(validating: request, field: "limits[\(index)]")
      guard seen.insert(limit.key).inserted else {
        throw .field("limits[\(index)].descriptors", .invalidArgument, "limits[\(index)] repeats the limit '\(limit.key)'")
      }
      return limit
    }
  }
}
