import Foundation
import HeraldCore

/// How campaign results are counted (SPEC §13): the installation's one currency and the window in
/// which a conversion is credited to a click, an open or a delivery.
package struct ResultsSettings: Sendable, Equatable {
  /// ISO 4217, upper case: every amount (cost, revenue) is in its minor units.
  package var currency = "USD"
  /// How far back from a conversion a touch is credited: HERALD_ATTRIBUTION_WINDOW.
  package var attributionWindow: Duration = .seconds(7 * 86_400)

  package init(currency: String = "USD", attributionWindow: Duration = .seconds(7 * 86_400)) {
    self.currency = currency
    self.attributionWindow = attributionWindow
  }

  package static func load(_ settings: Settings) throws -> ResultsSettings {
    var result = ResultsSettings()
    let currency = settings.string("HERALD_CURRENCY", default: result.currency)
    guard Self.isCurrencyCode(currency) else {
      throw ConfigurationError.malformed(
        variable: "HERALD_CURRENCY", value: currency, expected: "an ISO 4217 currency code such as USD or EUR")
    }
    result.currency = currency
    result.attributionWindow = try settings.duration("HERALD_ATTRIBUTION_WINDOW", default: result.attributionWindow)
    guard result.attributionWindow >= .seconds(60), result.attributionWindow <= .seconds(366 * 86_400) else {
      throw ConfigurationError.malformed(
        variable: "HERALD_ATTRIBUTION_WINDOW", value: "\(result.attributionWindow)", expected: "from 1m to 8784h (a year)")
    }
    return result
  }

  /// Three upper-case letters naming a currency ISO 4217 lists.
  package static func isCurrencyCode(_ code: String) -> Bool {
    code.utf8.count == 3 && code.utf8.allSatisfy { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
      && Locale.commonISOCurrencyCodes.contains(code)
  }

  /// The window in whole seconds, for SQL.
  var attributionSeconds: Int64 { attributionWindow.components.seconds }
}

/// A campaign's A/B test as asked for (SPEC §13).
package struct ABTestSettings: Sendable, Equatable {
  package static let metrics = ["open", "click", "conversion", "revenue_per_recipient"]
  package static let fallbacks = ["control", "split"]

  /// Share of the eligible audience in the test, in basis points (2,000 = 20 %).
  package var testBasisPoints: Int
  package var waitSeconds: Int
  package var metric: String
  /// 9,500 = 95 %.
  package var confidenceBasisPoints: Int
  package var fallback: String

  package init(testBasisPoints: Int, waitSeconds: Int, metric: String, confidenceBasisPoints: Int = 9_500, fallback: String = "control") {
    self.testBasisPoints = testBasisPoints
    self.waitSeconds = waitSeconds
    self.metric = metric
    self.confidenceBasisPoints = confidenceBasisPoints
    self.fallback = fallback
  }
}

/// A campaign's A/B test as stored: its settings, when it is decided and, once it is, how.
package struct ABTestRecord: Sendable {
  package var settings: ABTestSettings
  package var decideAt: Date?
  package var decision: ABDecision?
}

/// One variant's numbers in an A/B test: its test recipients, and of them those who opened,
/// clicked or converted (or, for revenue per recipient, the revenue and its sum of squares over
/// recipients).
package struct ABArm: Sendable, Equatable {
  package var variant: String
  package var recipients: Int64
  package var successes: Int64
  /// Σ (revenue of a recipient)², for Welch's test on revenue per recipient.
  package var sumOfSquares: Double = 0

  package init(variant: String, recipients: Int64, successes: Int64, sumOfSquares: Double = 0) {
    self.variant = variant
    self.recipients = recipients
    self.successes = successes
    self.sumOfSquares = sumOfSquares
  }

  var value: Double { recipients > 0 ? Double(successes) / Double(recipients) : 0 }
}

/// What decided an A/B test, stored with it (jsonb) and shown with the campaign.
package struct ABDecision: Sendable, Codable, Equatable {
  package struct VariantResult: Sendable, Codable, Equatable {
    package var variant: String
    package var recipients: Int64
    package var successes: Int64
    package var value: Double
    package var z: Double?
    package var pValue: Double?
    package var leader: Bool
  }

  /// winner, control, split or operator.
  package var outcome: String
  /// Where the rest goes; nil for split.
  package var winner: String?
  package var reason: String
  package var decidedAt: Date
  package var method: String
  package var confidence: Double
  package var alpha: Double
  package var variants: [VariantResult]
  package var restRecipients: Int64 = 0
}

/// The statistics of an A/B test's decision (SPEC §13): the leader — the variant with the best
/// value, picked after looking — wins only if its difference from every other variant is
/// significant in a two-sided z-test at 1 − confidence, Bonferroni-corrected over every pair of
/// variants (k(k−1)/2 comparisons). Two-sided, because the leader is chosen by the data: testing
/// it one-sided would declare a winner between equal variants twice as often as asked.
package enum ABStatistics {
  /// Φ(z), the standard normal distribution function.
  static func normalCDF(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }

  /// Two-sided p-value of a z score: P(|Z| ≥ |z|).
  static func twoSided(_ z: Double) -> Double { erfc(abs(z) / 2.0.squareRoot()) }

  /// The pooled two-proportion z-test of `a` against `b` (z > 0: `a` is ahead), two-sided; nil
  /// when it cannot be computed (no recipients, or no variance: both all or nothing).
  package static func twoProportion(_ a: ABArm, _ b: ABArm) -> (z: Double, pValue: Double)? {
    guard a.recipients > 0, b.recipients > 0 else { return nil }
    let (n1, n2) = (Double(a.recipients), Double(b.recipients))
    let pooled = Double(a.successes + b.successes) / (n1 + n2)
    let se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)).squareRoot()
    guard se > 0 else { return nil }
    let z = (a.value - b.value) / se
    return (z, twoSided(z))
  }

  /// Welch's z-test (large samples) of `a`'s mean revenue per recipient against `b`'s, two-sided;
  /// nil without at least two recipients each or without variance.
  package static func welch(_ a: ABArm, _ b: ABArm) -> (z: Double, pValue: Double)? {
    guard a.recipients > 1, b.recipients > 1 else { return nil }
    func variance(_ arm: ABArm) -> Double {
      let n = Double(arm.recipients)
      let sum = Double(arm.successes)
      return max(0, (arm.sumOfSquares - sum * sum / n) / (n - 1))
    }
    let se = (variance(a) / Double(a.recipients) + variance(b) / Double(b.recipients)).squareRoot()
    guard se > 0 else { return nil }
    let z = (a.value - b.value) / se
    return (z, twoSided(z))
  }

  /// Decides a test over `arms` (in the campaign's order; the first is the control).
  package static func decide(
    metric: String, arms: [ABArm], confidenceBasisPoints: Int, fallback: String, at now: Date
  ) -> ABDecision {
    let confidence = Double(confidenceBasisPoints) / 10_000
    let comparisons = max(arms.count * (arms.count - 1) / 2, 1)
    // From basis points, so that 95 % gives exactly 0.05.
    let alpha = Double(10_000 - confidenceBasisPoints) / 10_000 / Double(comparisons)
    let method = metric == "revenue_per_recipient" ? "welch_z_test" : "two_proportion_z_test"
    // The leader: the best value, the earlier variant on a tie.
    var leaderIndex = 0
    for (index, arm) in arms.enumerated() where arm.value > arms[leaderIndex].value { leaderIndex = index }
    let leader = arms[leaderIndex]
    var results: [ABDecision.VariantResult] = [
      .init(
        variant: leader.variant, recipients: leader.recipients, successes: leader.successes, value: leader.value, z: nil,
        pValue: nil, leader: true)
    ]
    var worst: (variant: String, pValue: Double)?
    for (index, arm) in arms.enumerated() where index != leaderIndex {
      let test = metric == "revenue_per_recipient" ? welch(leader, arm) : twoProportion(leader, arm)
      let pValue = test?.pValue ?? 1
      results.append(
        .init(
          variant: arm.variant, recipients: arm.recipients, successes: arm.successes, value: arm.value, z: test?.z ?? 0,
          pValue: pValue, leader: false))
      if worst == nil || pValue > worst!.pValue { worst = (arm.variant, pValue) }
    }
    let percent = Self.percent(confidence)
    let measured =
      "\(Self.describe(metric, leader)) against \(results.dropFirst().map { Self.describe(metric, $0) }.joined(separator: ", "))"
    if let worst, worst.pValue < alpha {
      return ABDecision(
        outcome: "winner", winner: leader.variant,
        reason:
          "\(leader.variant) wins at \(percent) confidence: \(measured); the largest p-value, \(Self.number(worst.pValue)) against \(worst.variant), is below \(Self.number(alpha))",
        decidedAt: now, method: method, confidence: confidence, alpha: alpha, variants: results)
    }
    let control = arms[0].variant
    let lead =
      worst.map { "the largest p-value, \(Self.number($0.pValue)) against \($0.variant), is not below \(Self.number(alpha))" } ?? ""
    return ABDecision(
      outcome: fallback, winner: fallback == "split" ? nil : control,
      reason:
        "no variant is better at \(percent) confidence (\(leader.variant) leads: \(measured); \(lead)): "
        + (fallback == "split" ? "the rest is split evenly over the variants" : "the rest goes to the control, \(control)"),
      decidedAt: now, method: method, confidence: confidence, alpha: alpha, variants: results)
  }

  /// A decision by hand, with the numbers at that moment for the record.
  package static func picked(
    _ variant: String, metric: String, arms: [ABArm], confidenceBasisPoints: Int, at now: Date
  ) -> ABDecision {
    var decision = decide(metric: metric, arms: arms, confidenceBasisPoints: confidenceBasisPoints, fallback: "control", at: now)
    decision.outcome = "operator"
    decision.winner = variant
    decision.reason = "\(variant) picked by an operator before the test ended (the numbers then are kept for the record)"
    return decision
  }

  static func describe(_ metric: String, _ arm: ABArm) -> String {
    describe(metric, variant: arm.variant, successes: arm.successes, recipients: arm.recipients, value: arm.value)
  }

  static func describe(_ metric: String, _ result: ABDecision.VariantResult) -> String {
    describe(metric, variant: result.variant, successes: result.successes, recipients: result.recipients, value: result.value)
  }

  static func describe(_ metric: String, variant: String, successes: Int64, recipients: Int64, value: Double) -> String {
    if metric == "revenue_per_recipient" {
      return "\(variant) \(number(value)) per recipient (\(successes) over \(recipients))"
    }
    return "\(variant) \(successes)/\(recipients) = \(percent(value))"
  }

  static func percent(_ value: Double) -> String {
    String(format: "%.2f %%", value * 100).replacingOccurrences(of: ".00 %", with: " %")
  }

  static func number(_ value: Double) -> String {
    value != 0 && abs(value) < 0.0001 ? String(format: "%.2e", value) : String(format: "%.4f", value)
  }
}

/// A campaign's counters at one moment (analytics totals or a snapshot), from which its rates are
/// computed (SPEC §13).
package struct ResultCounters: Sendable, Equatable {
  package var audience: Int64 = 0
  package var recipients: Int64 = 0
  package var queued: Int64 = 0
  package var sent: Int64 = 0
  package var delivered: Int64 = 0
  package var bounced: Int64 = 0
  package var softBounced: Int64 = 0
  package var failed: Int64 = 0
  package var opened: Int64 = 0
  package var uniqueOpened: Int64 = 0
  package var clicked: Int64 = 0
  package var uniqueClicked: Int64 = 0
  package var replied: Int64 = 0
  package var unsubscribed: Int64 = 0
  package var complained: Int64 = 0
  package var costCents: Int64 = 0
  package var conversions: Int64 = 0
  package var revenueCents: Int64 = 0
  /// Opens and clicks judged a machine's: shown in analytics, apart from the results (not snapshotted).
  package var machineOpened: Int64 = 0
  package var machineClicked: Int64 = 0

  package init() {}

  /// Sent less bounces: what reached a mailbox or phone, the denominator of engagement rates.
  package var reached: Int64 { max(0, sent - bounced - softBounced) }

  /// Each rate as (numerator, denominator).
  package var rates: [(name: String, numerator: Int64, denominator: Int64)] {
    [
      ("delivery", reached, sent), ("open", uniqueOpened, reached), ("click", uniqueClicked, reached),
      ("click_to_open", uniqueClicked, uniqueOpened), ("bounce", bounced, sent), ("complaint", complained, reached),
      ("unsubscribe", unsubscribed, reached), ("conversion", conversions, reached),
      ("revenue_per_recipient", revenueCents, recipients), ("roi", revenueCents - costCents, costCents),
    ]
  }
}
