import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Synchronization
import Testing

/// The algorithms' arithmetic, with time passed in (SPEC §4).
@Suite struct RateLimitMathTests {
  static let t0 = 1_800_000_000.0  // a whole number of days since 1970: windows start here

  @Test func tokenBucketAllowsTheBurstThenRefillsAtTheRate() {
    // 10 per second, bucket of 20.
    let rule = Rule(algorithm: .tokenBucket, limit: 10, burst: 20, unit: 1)
    var state = CounterState()
    var admitted = 0
    for _ in 0..<25 where state.take(1, rule: rule, now: Self.t0, peek: false).allowed { admitted += 1 }
    #expect(admitted == 20)
    let refused = state.take(1, rule: rule, now: Self.t0, peek: false)
    #expect(!refused.allowed && refused.remaining == 0)
    #expect(abs(refused.retryAfter - 0.1) < 1e-9, "one token comes back every 0.1 s")
    #expect(abs(refused.resetAt - (Self.t0 + 2)) < 1e-9, "full again after 2 s")
    // 0.35 s later three tokens are back, not four.
    #expect(state.take(3, rule: rule, now: Self.t0 + 0.35, peek: false).allowed)
    #expect(!state.take(1, rule: rule, now: Self.t0 + 0.35, peek: false).allowed)
    // Refill never exceeds the burst.
    let later = state.take(0, rule: rule, now: Self.t0 + 3600, peek: true)
    #expect(later.remaining == 20)
    // More than the burst never fits; the answer says to wait a full refill.
    let tooMany = state.take(21, rule: rule, now: Self.t0 + 3600, peek: false)
    #expect(!tooMany.allowed && abs(tooMany.retryAfter - 2) < 1e-9)
  }

  @Test func peekNeverConsumes() {
    let rule = Rule(algorithm: .tokenBucket, limit: 5, burst: 5, unit: 60)
    var state = CounterState()
    for _ in 0..<10 { #expect(state.take(1, rule: rule, now: Self.t0, peek: true).remaining == 4) }
    #expect(state == CounterState())
    var window = CounterState()
    let windowRule = Rule(algorithm: .slidingWindow, limit: 5, burst: 0, unit: 60)
    for _ in 0..<10 { #expect(window.take(5, rule: windowRule, now: Self.t0, peek: true).allowed) }
    #expect(window == CounterState())
  }

  @Test func fixedWindowResetsAtTheWindowEdge() {
    let rule = Rule(algorithm: .fixedWindow, limit: 3, burst: 0, unit: 60)
    var state = CounterState()
    for _ in 0..<3 { #expect(state.take(1, rule: rule, now: Self.t0 + 59.9, peek: false).allowed) }
    let refused = state.take(1, rule: rule, now: Self.t0 + 59.9, peek: false)
    #expect(!refused.allowed && abs(refused.retryAfter - 0.1) < 1e-6 && refused.resetAt == Self.t0 + 60)
    // The next window starts empty (the fixed window's known weakness: 6 in 0.2 s at the edge).
    for _ in 0..<3 { #expect(state.take(1, rule: rule, now: Self.t0 + 60.1, peek: false).allowed) }
    #expect(!state.take(1, rule: rule, now: Self.t0 + 60.1, peek: false).allowed)
  }

  @Test func slidingWindowWeighsThePreviousWindow() {
    // 10 per minute.
    let rule = Rule(algorithm: .slidingWindow, limit: 10, burst: 0, unit: 60)
    var state = CounterState()
    #expect(state.take(10, rule: rule, now: Self.t0 + 50, peek: false).allowed)
    #expect(!state.take(1, rule: rule, now: Self.t0 + 59, peek: false).allowed)
    // Unlike a fixed window, the edge does not free the whole limit: at 60 + 15 a quarter of the
    // minute has passed, so 10 × 0.75 = 7.5 of the last 60 s still count and 2 hits fit, not 3.
    let atEdge = state.take(0, rule: rule, now: Self.t0 + 75, peek: true)
    #expect(atEdge.remaining == 2)
    #expect(state.take(2, rule: rule, now: Self.t0 + 75, peek: false).allowed)
    let refused = state.take(1, rule: rule, now: Self.t0 + 75, peek: false)
    #expect(!refused.allowed)
    // It fits once the previous window's weight is 0.7 (7 + 2 + 1 = 10): at 60 + 18.
    #expect(abs(refused.retryAfter - 3) < 1e-6)
    #expect(state.take(1, rule: rule, now: Self.t0 + 75 + refused.retryAfter + 1e-6, peek: false).allowed)
    // Two windows later nothing counts.
    #expect(state.take(0, rule: rule, now: Self.t0 + 180, peek: true).remaining == 10)
  }

  @Test func slidingWindowRetryAfterLooksIntoTheNextWindow() {
    let rule = Rule(algorithm: .slidingWindow, limit: 10, burst: 0, unit: 60)
    var state = CounterState()
    #expect(state.take(10, rule: rule, now: Self.t0 + 30, peek: false).allowed)
    let refused = state.take(4, rule: rule, now: Self.t0 + 30, peek: false)
    // Next window: 10 × (1 − y/60) + 4 ≤ 10 → y = 24 s into it, i.e. 30 + 24 s from now.
    #expect(!refused.allowed && abs(refused.retryAfter - 54) < 1e-6)
  }

  @Test func warmupVolumesFollowTheCalendar() throws {
    let limit = try LimitDefinition(
      validating: .with {
        $0.descriptors = [
          .with {
            $0.key = "identity"
            $0.value = "pool-1"
          }
        ]
        $0.warmup = .with {
          $0.startDate = "2027-01-15"
          $0.dailyVolumes = [50, 100, 500]
        }
      })
    let start = try #require(LimitDefinition.Warmup.dayFormat.date(from: "2027-01-15")).timeIntervalSince1970
    #expect(limit.unit == .day && limit.algorithm == .fixedWindow)
    #expect(limit.rule(at: start - 1).limit == 0, "nothing before the start")
    #expect(limit.rule(at: start).limit == 50)
    #expect(limit.rule(at: start + 86400 + 3600).limit == 100)
    #expect(limit.rule(at: start + 30 * 86400).limit == 500, "the last volume holds after the schedule")
    var state = CounterState()
    let rule = limit.rule(at: start + 10)
    for _ in 0..<50 { #expect(state.take(1, rule: rule, now: start + 10, peek: false).allowed) }
    let refused = state.take(1, rule: rule, now: start + 10, peek: false)
    #expect(!refused.allowed && abs(refused.retryAfter - (86400 - 10)) < 1e-6, "wait for tomorrow")
    // Tomorrow's volume applies tomorrow.
    for _ in 0..<100 { #expect(state.take(1, rule: limit.rule(at: start + 86400), now: start + 86400, peek: false).allowed) }
  }

  @Test func theMostExactLimitMatches() async throws {
    let limiter = RateLimiter(store: nil, logger: Logger(label: "test"))
    func limit(_ descriptors: [(String, String)], _ perSecond: Int64) throws -> LimitDefinition {
      try LimitDefinition(
        validating: .with {
          $0.descriptors = descriptors.map { d in
            .with {
              $0.key = d.0
              $0.value = d.1
            }
          }
          $0.requestsPerUnit = perSecond
          $0.unit = .second
        })
    }
    limiter.setLimits(
      [
        try limit([("domain", "*")], 5), try limit([("domain", "gmail.com")], 2),
        try limit([("domain", "*"), ("provider", "smtp")], 7),
      ], readSince: limiter.editGeneration)
    #expect(limiter.limitCount == 3, "what herald_ratelimit_limits reads")
    func check(_ descriptors: [(key: String, value: String)], hits: Int64 = 1) -> Check { Check(descriptors: descriptors, hits: hits) }
    #expect(limiter.limit(for: [("domain", "gmail.com")])?.key == "domain=gmail.com")
    #expect(limiter.limit(for: [("domain", "yahoo.com")])?.key == "domain=*")
    #expect(limiter.limit(for: [("domain", "x.org"), ("provider", "smtp")])?.key == "domain=*,provider=smtp")
    #expect(limiter.limit(for: [("provider", "smtp")]) == nil)
    // Each value of a wildcard has its own counter.
    let outcomes = try await limiter.decide(
      [
        check([("domain", "a.com")], hits: 5), check([("domain", "b.com")], hits: 5), check([("domain", "a.com")]),
        check([("tenant", "t1")], hits: 1_000_000),
      ],
      peek: false, now: RateLimitMathTests.t0)
    #expect(outcomes.map(\.allowed) == [true, true, false, true])
    #expect(outcomes[3].limit == nil, "no limit: allowed, unlimited")
  }

  /// The heartbeat re-reads the limits while the API may edit them: a re-read that began before
  /// an edit must not undo it (a limit just put vanished until the next heartbeat, which a test
  /// caught under load).
  @Test func aReReadOlderThanAnEditDoesNotUndoIt() throws {
    let limiter = RateLimiter(store: nil, logger: Logger(label: "test"))
    let limit = try LimitDefinition(
      validating: .with {
        $0.descriptors = [RateLimitServiceTests.descriptor("domain", "*")]
        $0.requestsPerUnit = 3
        $0.unit = .minute
      })
    let beforePut = limiter.editGeneration
    limiter.upsertLimit(limit)
    #expect(!limiter.setLimits([], readSince: beforePut), "a read from before the put is refused")
    #expect(limiter.limit(for: [("domain", "gmail.com")])?.key == "domain=*", "the put stands")
    let beforeDelete = limiter.editGeneration
    limiter.removeLimit(key: "domain=*")
    #expect(!limiter.setLimits([limit], readSince: beforeDelete), "a read from before the delete is refused")
    #expect(limiter.limitCount == 0, "the delete stands")
    limiter.setLimits([limit], readSince: limiter.editGeneration)  // a later re-read applies
    #expect(limiter.limitCount == 1)
  }

  @Test func ringSpreadsKeysAndMovesOnlyTheLeaversKeys() {
    let three = HashRing(members: ["a", "b", "c"])
    let two = HashRing(members: ["a", "b"])
    let keys = (0..<3000).map { "domain=d\($0).example" }
    var perMember: [String: Int] = [:]
    for key in keys { perMember[three.owner(of: key)!, default: 0] += 1 }
    #expect(perMember.values.allSatisfy { $0 > 700 }, "\(perMember)")
    for key in keys where three.owner(of: key) != "c" {
      #expect(two.owner(of: key) == three.owner(of: key), "a key of a member that stayed does not move")
    }
    #expect(abs(three.shares().values.reduce(0, +) - 1) < 1e-9)
  }
}

/// The rate-limit service on real PostgreSQL: decisions, limits from the API and the file, and
/// counters that survive a restart.
@Suite(.timeLimit(.minutes(3))) struct RateLimitServiceTests {
  typealias Limits = Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>

  static func descriptor(_ key: String, _ value: String) -> Herald_Ratelimit_V1_Descriptor {
    .with {
      $0.key = key
      $0.value = value
    }
  }

  static func check(_ key: String, _ value: String, hits: Int64 = 0) -> Herald_Ratelimit_V1_RateLimitCheck {
    .with {
      $0.descriptors = [descriptor(key, value)]
      $0.hits = hits
    }
  }

  func withRateLimit(
    url: String? = nil, settings: RateLimitSettings = RateLimitSettings(), _ body: (Limits, PostgresClient) async throws -> Void
  ) async throws {
    let url = try await { if let url { url } else { try await TestPostgres.shared.makeDatabase() } }()
    try await withRunningService(RateLimitDefinition.make(settings: settings), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        try await withDatabase(url) { database async throws in
          try await body(Limits(wrapping: client), database)
        }
      }
    }
  }

  @Test func putReplacesByCanonicalKeyAndLists() async throws {
    try await withRateLimit { limits, _ async throws in
      let created = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("provider", "smtp-primary"), Self.descriptor("domain", "gmail.com")]
          $0.requestsPerUnit = 100
          $0.unit = .minute
        })
      #expect(created.key == "domain=gmail.com,provider=smtp-primary")
      #expect(created.burst == 100 && created.algorithm == .tokenBucket)
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("domain", "gmail.com"), Self.descriptor("provider", "smtp-primary")]
          $0.requestsPerUnit = 50
          $0.unit = .second
          $0.algorithm = .slidingWindow
        })
      let listed = try await limits.listLimits(.init()).limits
      #expect(listed.count == 1)
      #expect(listed.first?.requestsPerUnit == 50 && listed.first?.unit == .second && listed.first?.algorithm == .slidingWindow)
      #expect(listed.first?.descriptors.map(\.key) == ["domain", "provider"])
      #expect(try await limits.deleteLimit(.with { $0.key = "domain=gmail.com,provider=smtp-primary" }).deleted)
      #expect(try await limits.listLimits(.init()).limits.isEmpty)
    }
  }

  @Test func rejectsBadLimitsAndChecksNamingTheField() async throws {
    try await withRateLimit { limits, _ async throws in
      let good = Self.descriptor("provider", "sms")
      let cases: [(Herald_Ratelimit_V1_PutLimitRequest, String)] = [
        (
          .with {
            $0.requestsPerUnit = 1
            $0.unit = .second
          }, "descriptors"
        ),
        (
          .with {
            $0.descriptors = [Self.descriptor("a=b", "x")]
            $0.requestsPerUnit = 1
            $0.unit = .second
          }, "descriptors[0].key"
        ),
        (
          .with {
            $0.descriptors = [good, good]
            $0.requestsPerUnit = 1
            $0.unit = .second
          }, "descriptors[1].key"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.requestsPerUnit = 0
            $0.unit = .second
          }, "requests_per_unit"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.requestsPerUnit = 5
          }, "unit"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.requestsPerUnit = 5
            $0.unit = .second
            $0.algorithm = .fixedWindow
            $0.burst = 9
          }, "burst"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.warmup = .with {
              $0.startDate = "2026-02-30"
              $0.dailyVolumes = [1]
            }
          }, "warmup.start_date"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.warmup = .with {
              $0.startDate = "2026-02-03"
              $0.dailyVolumes = [1, -2]
            }
          }, "warmup.daily_volumes[1]"
        ),
        (
          .with {
            $0.descriptors = [good]
            $0.unit = .hour
            $0.warmup = .with {
              $0.startDate = "2026-02-03"
              $0.dailyVolumes = [1]
            }
          }, "warmup"
        ),
      ]
      for (request, field) in cases {
        await #expect { _ = try await limits.putLimit(request) } throws: { rpcError($0) == (.invalidArgument, field) }
      }
      #expect(try await limits.listLimits(.init()).limits.isEmpty, "nothing was written")
      let badChecks: [(Herald_Ratelimit_V1_ShouldRateLimitRequest, String)] = [
        (.init(), "checks"),
        (.with { $0.checks = [Self.check("domain", "*")] }, "checks[0].descriptors[0].value"),
        (.with { $0.checks = [Self.check("domain", "a.com"), Self.check("domain", "b.com", hits: -1)] }, "checks[1].hits"),
        (.with { $0.checks = Array(repeating: Self.check("domain", "a.com"), count: RateLimitService.maxChecks + 1) }, "checks"),
      ]
      for (request, field) in badChecks {
        await #expect { _ = try await limits.shouldRateLimit(request) } throws: { rpcError($0) == (.invalidArgument, field) }
      }
    }
  }

  @Test func batchedDecisionsAnswerPerCheckWithRetryAfter() async throws {
    try await withRateLimit { limits, _ async throws in
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("domain", "*")]
          $0.requestsPerUnit = 3
          $0.unit = .minute
          // Not a fixed window: the later checks must not land in a new minute.
          $0.algorithm = .tokenBucket
        })
      let checks = (0..<4).map { _ in Self.check("domain", "gmail.com") } + [Self.check("domain", "yahoo.com"), Self.check("tenant", "t1")]
      let answer = try await limits.shouldRateLimit(.with { $0.checks = checks })
      #expect(answer.overallCode == .overLimit)
      #expect(answer.statuses.map(\.code) == [.ok, .ok, .ok, .overLimit, .ok, .ok])
      #expect(answer.statuses.map(\.remaining) == [2, 1, 0, 0, 2, 0])
      let refused = answer.statuses[3]
      #expect(refused.key == "domain=gmail.com" && refused.limitKey == "domain=*" && refused.limit == 3 && refused.unit == .minute)
      #expect(refused.retryAfterMs > 0 && refused.retryAfterMs <= 60_000)
      #expect(answer.statuses[5].key.isEmpty, "no limit for tenant: allowed")
      // A peek answers without taking.
      let peek = try await limits.shouldRateLimit(
        .with {
          $0.checks = [Self.check("domain", "yahoo.com", hits: 2)]
          $0.peek = true
        })
      #expect(peek.statuses[0].code == .ok && peek.statuses[0].remaining == 0)
      let again = try await limits.shouldRateLimit(.with { $0.checks = [Self.check("domain", "yahoo.com", hits: 2)] })
      #expect(again.statuses[0].code == .ok && again.statuses[0].remaining == 0)
      let state = try await limits.getRateLimitState(.init())
      #expect(state.members.count == 1 && abs(state.members[0].ringShare - 1) < 1e-9)
      #expect(state.counters.map(\.key) == ["domain=gmail.com", "domain=yahoo.com"])
    }
  }

  /// A reset beyond 9999-12-31 (a burst of a billion refilled at one a day) is answered as that
  /// last instant, which every Timestamp form can hold, instead of failing the answer.
  @Test func aResetBeyondTheLastRepresentableTimeIsClamped() async throws {
    try await withRateLimit { limits, _ async throws in
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("domain", "*")]
          $0.requestsPerUnit = 1
          $0.unit = .day
          $0.burst = 999_999_999
          $0.algorithm = .tokenBucket
        })
      let check = Self.check("domain", "gmail.com", hits: 999_999_999)
      let taken = try #require(try await limits.shouldRateLimit(.with { $0.checks = [check] }).statuses.first)
      let refused = try #require(try await limits.shouldRateLimit(.with { $0.checks = [check] }).statuses.first)
      #expect(taken.code == .ok && refused.code == .overLimit)
      for status in [taken, refused] {
        #expect(status.resetAt.seconds == 253_402_300_799, "\(status.resetAt)")
        // The gateway writes it as RFC 3339.
        #expect(try status.jsonString().contains("9999-12-31T23:59:59Z"))
      }
      // The wait ends then too: now + retry_after is that instant.
      let endsAt = Date().timeIntervalSince1970 + Double(refused.retryAfterMs) / 1000
      #expect(abs(endsAt - 253_402_300_799) < 120, "retry_after_ms \(refused.retryAfterMs) ends at \(endsAt)")
      let state = try await limits.getRateLimitState(.init())
      #expect(state.counters.count == 1 && state.counters.allSatisfy { $0.resetAt.seconds == 253_402_300_799 })
      #expect(try state.jsonString().contains("9999-12-31T23:59:59Z"))
    }
  }

  @Test func hourAndDayCountersSurviveARestart() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRateLimit(url: url) { limits, database async throws in
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("identity", "pool-1")]
          $0.requestsPerUnit = 10
          $0.unit = .hour
          $0.algorithm = .slidingWindow
        })
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [Self.descriptor("provider", "smtp")]
          $0.requestsPerUnit = 10
          $0.unit = .second
        })
      let taken = try await limits.shouldRateLimit(
        .with {
          $0.checks = [Self.check("identity", "pool-1", hits: 7), Self.check("provider", "smtp", hits: 7)]
        })
      #expect(taken.statuses.map(\.remaining) == [3, 3])
      // The owner writes hour counters a few times a second, without waiting for a shutdown.
      try await eventually("the hour counter to be saved") {
        try await database.query("SELECT count FROM ratelimit.counters WHERE key = 'identity=pool-1'", logger: Logger(label: "test"))
          .decode(Int64.self).elements().first == 7
      }
    }
    try await withRateLimit(url: url) { limits, _ async throws in
      let after = try await limits.shouldRateLimit(
        .with {
          $0.checks = [
            Self.check("identity", "pool-1", hits: 4), Self.check("identity", "pool-1", hits: 3), Self.check("provider", "smtp"),
          ]
        })
      #expect(after.statuses.map(\.code) == [.overLimit, .ok, .ok], "7 of 10 were already used this hour")
      #expect(after.statuses[1].remaining == 0)
      #expect(after.statuses[2].remaining == 9, "second limits live in memory only")
    }
  }

  @Test func theLimitsFileIsAppliedAndItsErrorsNameTheEntry() async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    func write(_ text: String) throws -> String {
      let path = folder.appendingPathComponent("\(UUID().uuidString).json").path
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      return path
    }
    let bad: [(String, String)] = [
      (
        #"{"limits": [{"descriptors": [{"key": "provider", "value": "a"}], "requestsPerUnit": 5, "unit": "UNIT_SECOND"}, {"descriptors": [{"key": "domain", "value": "b"}], "requestsPerUnit": 5}]}"#,
        "limits[1].unit"
      ),
      (
        #"{"limits": [{"descriptors": [{"key": "provider", "value": "a"}], "requestsPerUnit": 5, "unit": "UNIT_FORTNIGHT"}]}"#,
        "is not valid"
      ),
      (
        #"{"limits": [{"descriptors": [{"key": "p", "value": "a"}], "requestsPerUnit": 5, "unit": "UNIT_DAY"}, {"descriptors": [{"key": "p", "value": "a"}], "requestsPerUnit": 6, "unit": "UNIT_DAY"}]}"#,
        "limits[1] repeats the limit 'p=a'"
      ),
      ("not json", "is not valid"),
    ]
    for (text, expected) in bad {
      let path = try write(text)
      #expect { _ = try LimitDefinition.loadFile(path) } throws: { "\($0)".contains(expected) && "\($0)".contains(path) }
    }
    #expect { _ = try LimitDefinition.loadFile(folder.appendingPathComponent("missing.json").path) } throws: {
      "\($0)".contains("cannot read")
    }

    var settings = RateLimitSettings()
    settings.limitsFile = try write(
      #"""
      {"limits": [
        {"descriptors": [{"key": "provider", "value": "smtp-primary"}], "requestsPerUnit": 100, "unit": "UNIT_SECOND", "burst": 200},
        {"descriptors": [{"key": "identity", "value": "ip-pool-1"}], "warmup": {"startDate": "2026-01-01", "dailyVolumes": [50, 100]}}
      ]}
      """#)
    try await withRateLimit(settings: settings) { limits, _ async throws in
      let listed = try await limits.listLimits(.init()).limits
      #expect(listed.map(\.key) == ["identity=ip-pool-1", "provider=smtp-primary"])
      #expect(listed[0].warmup.dailyVolumes == [50, 100] && listed[0].warmup.startDate == "2026-01-01" && listed[0].unit == .day)
      #expect(listed[1].burst == 200)
      let answer = try await limits.shouldRateLimit(.with { $0.checks = [Self.check("identity", "ip-pool-1", hits: 100)] })
      #expect(answer.statuses[0].code == .ok && answer.statuses[0].limit == 100, "the schedule is past its end: its last volume")
    }
  }

  @Test func settingsNameTheBadVariable() {
    let cases: [([String: String], String)] = [
      (["HERALD_RATELIMIT_FAILURE_POLICY": "sometimes"], "HERALD_RATELIMIT_FAILURE_POLICY"),
      (["HERALD_RATELIMIT_MEMBER_TTL": "1s"], "HERALD_RATELIMIT_MEMBER_TTL"),
      (["HERALD_RATELIMIT_ADVERTISE_ADDR": "nowhere"], "HERALD_RATELIMIT_ADVERTISE_ADDR"),
      (["HERALD_RATELIMIT_FLUSH_INTERVAL": "soon"], "HERALD_RATELIMIT_FLUSH_INTERVAL"),
    ]
    for (environment, variable) in cases {
      #expect { _ = try RateLimitSettings.load(Settings(environment: environment)) } throws: { "\($0)".contains(variable) }
    }
  }

  /// Counts what delivery asks of the real throttle.
  final class CountingThrottle: SendThrottle {
    let inner: RateLimitThrottle
    let calls = Mutex<[Int]>([])
    init(_ inner: RateLimitThrottle) { self.inner = inner }
    func delays(_ queries: [ThrottleQuery]) async -> [Duration?] {
      calls.withLock { $0.append(queries.count) }
      return await inner.delays(queries)
    }
  }

  /// A rate-limit service holding `limits`, and a delivery service that asks it (through
  /// `throttle` made from the rate-limit client, else through its own client) and sends to an
  /// HTTP sink as the provider `hook`, all on one fresh database.
  func withLimitedDelivery(
    _ limits: [Herald_Ratelimit_V1_PutLimitRequest], settings: DeliverySettings,
    throttle: ((GRPCClient<HTTP2ClientTransport.Posix>) -> any SendThrottle)? = nil,
    _ body: (
      _ limits: Limits, _ delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>, _ database: PostgresClient,
      _ sink: RequestLog
    ) async throws -> Void
  ) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withHTTPSink { sinkPort, sink in
      try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { rateLimitPort, _ async throws in
        try await withClient(port: rateLimitPort) { client async throws in
          let service = Limits(wrapping: client)
          for limit in limits { _ = try await service.putLimit(limit) }
          let delivery = DeliveryDefinition.make(settings: settings, throttle: throttle.map { $0(client) })
          let dependencies = throttle == nil ? ["ratelimit": ServiceAddress(host: "127.0.0.1", port: rateLimitPort)] : [:]
          try await withRunningService(delivery, databaseURL: url, dependencies: dependencies) { deliveryPort, _ async throws in
            try await withClient(port: deliveryPort) { deliveryClient async throws in
              try await withDatabase(url) { database async throws in
                let deliveryService = Herald_Delivery_V1_DeliveryService.Client(wrapping: deliveryClient)
                _ = try await deliveryService.putProvider(
                  DeliveryWorkerTests.httpProvider("hook", port: sinkPort, priority: 0, channel: .email))
                try await body(service, deliveryService, database, sink)
              }
            }
          }
        }
      }
    }
  }

  /// A worker asks for a whole claimed batch in one call (issue #18): 60 messages under a
  /// `domain=*` limit and a provider limit that do not bind are decided in a call per batch, each
  /// message once, and the service counted every one of them.
  @Test func deliveryDecidesAWholeBatchInOneCall() async throws {
    let limits = [Self.descriptor("domain", "*"), Self.descriptor("provider", "hook")].map { descriptor in
      Herald_Ratelimit_V1_PutLimitRequest.with {
        $0.descriptors = [descriptor]
        $0.requestsPerUnit = 100_000
        $0.unit = .hour
        $0.algorithm = .fixedWindow
      }
    }
    var settings = DeliveryWorkerTests.settings()
    settings.workers = 1
    let counting = Mutex<CountingThrottle?>(nil)
    let throttle = { (client: GRPCClient<HTTP2ClientTransport.Posix>) -> any SendThrottle in
      // A generous deadline: an answer later than it lets the send go uncounted (fail-open), which
      // a loaded machine must not turn into a wrong count here.
      let made = CountingThrottle(RateLimitThrottle(client: client, timeout: .seconds(20), logger: Logger(label: "test")))
      counting.withLock { $0 = made }
      return made
    }
    try await withLimitedDelivery(limits, settings: settings, throttle: throttle) { limits, service, database, sink in
      _ = try await service.enqueueMessages(
        .with { $0.messages = (1...60).map { DeliveryWorkerTests.email("batch-\($0)", to: "u\($0)@d\($0 % 3).example.com") } })
      try await eventually(timeout: .seconds(30), "all 60 to be sent") {
        try await DeliveryWorkerTests().statuses(database) == ["sent": 60]
      }
      #expect(sink.count == 60)
      let calls = try #require(counting.withLock { $0 }).calls.withLock { $0 }
      #expect(calls.reduce(0, +) == 60, "each message asked about once: \(calls)")
      #expect(calls.count <= 6 && calls.max() ?? 0 >= 10, "a call per claimed batch, not per message: \(calls)")
      let state = try await limits.getRateLimitState(.init())
      let used = state.counters.filter { $0.limitKey == "provider=hook" }.map { $0.limit - $0.remaining }
      #expect(used == [60], "the service took every send from the provider's limit: \(state.counters)")
      let domains = state.counters.filter { $0.limitKey == "domain=*" }.map { $0.limit - $0.remaining }.sorted()
      #expect(domains == [20, 20, 20], "and from each domain's: \(state.counters)")
    }
  }

  /// Delivery asks before each send; an over-limit answer delays the message by the retry-after,
  /// and it is sent later, never failed (SPEC §3/§4).
  @Test func deliveryWaitsForTheLimitAndSendsLater() async throws {
    let limit = Herald_Ratelimit_V1_PutLimitRequest.with {
      $0.descriptors = [Self.descriptor("domain", "example.com")]
      $0.requestsPerUnit = 2
      $0.unit = .second
      $0.algorithm = .fixedWindow
    }
    var settings = DeliveryWorkerTests.settings()
    settings.maxAttempts = 1  // a failure would show at once: there must be none
    try await withLimitedDelivery([limit], settings: settings) { _, service, database, sink in
      let started = ContinuousClock.now
      _ = try await service.enqueueMessages(
        .with {
          $0.messages = (1...6).map { DeliveryWorkerTests.email("rl-\($0)", to: "u\($0)@example.com") }
        })
      try await eventually(timeout: .seconds(20), "all six to be sent") {
        try await DeliveryWorkerTests().statuses(database) == ["sent": 6]
      }
      // Two a second: the last two cannot have gone before two more seconds began.
      #expect(ContinuousClock.now - started >= .seconds(1))
      #expect(sink.count == 6)
      let deferred =
        try await database.query(
          "SELECT count(*)::int FROM delivery.delivery_events WHERE status = 'deferred'", logger: Logger(label: "test")
        ).decode(Int.self).elements().first ?? 0
      // Any two consecutive seconds let four through: at least two of the six waited.
      #expect(deferred >= 2, "the ones over the limit waited")
      let attempts =
        try await database.query(
          "SELECT max(attempts)::int FROM delivery.messages", logger: Logger(label: "test")
        ).decode(Int.self).elements().first ?? -1
      #expect(attempts <= 1, "waiting for a limit is not an attempt")
    }
  }
}
