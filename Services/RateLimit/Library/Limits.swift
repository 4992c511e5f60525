import Foundation
import GRPCCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO

/// A limit over a set of descriptors, e.g. `domain=*,provider=smtp-primary`. A value `*` matches
/// any value, and each value gets its own counter.
package struct LimitDefinition: Sendable, Equatable {
  package enum Unit: String, Sendable, CaseIterable {
    case second, minute, hour, day

    package var seconds: Double {
      switch self {
      case .second: 1
      case .minute: 60
      case .hour: 3600
      case .day: 86400
      }
    }

    /// Hour and day counters are written to the database so a restart does not reset them.
    package var isPersisted: Bool { self == .hour || self == .day }
  }

  package enum Algorithm: String, Sendable, CaseIterable {
    case tokenBucket = "token_bucket"
    case slidingWindow = "sliding_window"
    case fixedWindow = "fixed_window"
  }

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

  /// Descriptors sorted by key; keys are unique.
  package var descriptors: [(key: String, value: String)]
  package var requestsPerUnit: Int64
  package var unit: Unit
  package var algorithm: Algorithm
  package var burst: Int64
  package var warmup: Warmup?
  package var updatedAt: Date?

  package var key: String { Self.canonicalKey(descriptors) }

  /// What the limit allows at `now`.
  package func rule(at now: Double) -> Rule {
    if let warmup {
      return Rule(algorithm: .fixedWindow, limit: warmup.volume(at: now), burst: 0, unit: Unit.day.seconds)
    }
    return Rule(algorithm: algorithm, limit: requestsPerUnit, burst: burst, unit: unit.seconds)
  }

  package static func canonicalKey(_ descriptors: [(key: String, value: String)]) -> String {
    descriptors.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
  }

  /// Parses a canonical key back into descriptors (keys and values never hold `=` or `,`).
  package static func descriptors(fromKey key: String) -> [(key: String, value: String)] {
    key.split(separator: ",").map { pair in
      let parts = pair.split(separator: "=", maxSplits: 1)
      return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }
  }

  package static func == (lhs: Self, rhs: Self) -> Bool {
    lhs.key == rhs.key && lhs.requestsPerUnit == rhs.requestsPerUnit && lhs.unit == rhs.unit
      && lhs.algorithm == rhs.algorithm && lhs.burst == rhs.burst && lhs.warmup == rhs.warmup
  }
}

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
        throw .field(path("warmup"), .invalidArgument, "\(path("warmup")) caps days: leave unit and algorithm out (or UNIT_DAY, ALGORITHM_FIXED_WINDOW)")
      }
      guard let start = Warmup.dayFormat.date(from: warmup.startDate), Warmup.dayFormat.string(from: start) == warmup.startDate else {
        throw .field(path("warmup.start_date"), .invalidArgument, "\(path("warmup.start_date")) '\(warmup.startDate)' is not a date like 2026-11-23")
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


/// `ratelimit.limits` and `ratelimit.counters`.
package struct LimitStore: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  package func put(_ limit: LimitDefinition) async throws -> LimitDefinition {
    let rows = try await client.query(
      """
      INSERT INTO ratelimit.limits (key, requests_per_unit, unit, algorithm, burst, warmup_start, warmup_volumes)
      VALUES (\(limit.key), \(limit.requestsPerUnit), \(limit.unit.rawValue), \(limit.algorithm.rawValue), \(limit.burst),
        \(limit.warmup.map { Date(timeIntervalSince1970: $0.start) }), \(limit.warmup?.dailyVolumes))
      ON CONFLICT (key) DO UPDATE SET
        requests_per_unit = EXCLUDED.requests_per_unit, unit = EXCLUDED.unit, algorithm = EXCLUDED.algorithm,
        burst = EXCLUDED.burst, warmup_start = EXCLUDED.warmup_start, warmup_volumes = EXCLUDED.warmup_volumes,
        updated_at = now()
      RETURNING \(unescaped: Self.columns)
      """, logger: logger)
    guard let stored = try await Self.decode(rows).first else {
      throw PostgresError.protocol("INSERT ... RETURNING gave no row")
    }
    return stored
  }

  package func all() async throws -> [LimitDefinition] {
    try await Self.decode(client.query("SELECT \(unescaped: Self.columns) FROM ratelimit.limits ORDER BY key", logger: logger))
  }

  /// Removes the limit and its counters.
  package func delete(key: String) async throws -> Bool {
    let rows = try await client.query(
      """
      WITH gone AS (DELETE FROM ratelimit.limits WHERE key = \(key) RETURNING key),
      counters AS (DELETE FROM ratelimit.counters WHERE limit_key IN (SELECT key FROM gone))
      SELECT count(*)::int FROM gone
      """, logger: logger)
    return try await rows.decode(Int.self).elements().first == 1
  }

  static let columns = "key, requests_per_unit, unit, algorithm, burst, warmup_start, warmup_volumes, updated_at"

  static func decode(_ rows: PostgresRowSequence) async throws -> [LimitDefinition] {
    var limits: [LimitDefinition] = []
    for try await (key, requests, unit, algorithm, burst, warmupStart, warmupVolumes, updatedAt) in rows.decode(
      (String, Int64, String, String, Int64, Date?, [Int64]?, Date).self)
    {
      guard let unit = LimitDefinition.Unit(rawValue: unit), let algorithm = LimitDefinition.Algorithm(rawValue: algorithm)
      else { throw PostgresError.protocol("ratelimit.limits row '\(key)' has unit '\(unit)' or algorithm '\(algorithm)'") }
      let warmup = warmupStart.map { LimitDefinition.Warmup(start: $0.timeIntervalSince1970, dailyVolumes: warmupVolumes ?? [0]) }
      limits.append(
        LimitDefinition(
          descriptors: LimitDefinition.descriptors(fromKey: key), requestsPerUnit: requests, unit: unit,
          algorithm: algorithm, burst: burst, warmup: warmup, updatedAt: updatedAt))
    }
    return limits
  }

  /// Saved counters of `keys` (hour and day limits only are saved).
  package func counters(_ keys: [String]) async throws -> [String: CounterState] {
    guard !keys.isEmpty else { return [:] }
    var states: [String: CounterState] = [:]
    let rows = try await client.query(
      """
      SELECT key, tokens, updated, window_start, count, previous_count FROM ratelimit.counters WHERE key = ANY(\(keys))
      """, logger: logger)
    for try await (key, tokens, updated, windowStart, count, previous) in rows.decode((String, Double, Double, Double, Int64, Int64).self) {
      states[key] = CounterState(tokens: tokens, updated: updated, windowStart: windowStart, count: count, previousCount: previous)
    }
    return states
  }

  /// Saves counters in one statement.
  package func save(_ counters: [(key: String, limitKey: String, state: CounterState)]) async throws {
    guard !counters.isEmpty else { return }
    try await client.query(
      """
      INSERT INTO ratelimit.counters (key, limit_key, tokens, updated, window_start, count, previous_count, saved_at)
      SELECT c.*, now() FROM unnest(\(counters.map(\.key)), \(counters.map(\.limitKey)), \(counters.map(\.state.tokens)),
        \(counters.map(\.state.updated)), \(counters.map(\.state.windowStart)), \(counters.map(\.state.count)),
        \(counters.map(\.state.previousCount))) AS c(key, limit_key, tokens, updated, window_start, count, previous_count)
      -- A limit deleted meanwhile (on another replica) takes its counters with it.
      WHERE EXISTS (SELECT 1 FROM ratelimit.limits l WHERE l.key = c.limit_key)
      ON CONFLICT (key) DO UPDATE SET
        limit_key = EXCLUDED.limit_key, tokens = EXCLUDED.tokens, updated = EXCLUDED.updated,
        window_start = EXCLUDED.window_start, count = EXCLUDED.count, previous_count = EXCLUDED.previous_count,
        saved_at = now()
      """, logger: logger)
  }
}
