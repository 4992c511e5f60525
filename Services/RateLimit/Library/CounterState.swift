/// One counter's state. All times are seconds since 1970 (wall clock, so that persisted hour and
/// day windows mean the same after a restart); `now` is always passed in, which keeps the math
/// testable to the microsecond.
package struct CounterState: Sendable, Equatable {
  /// Token bucket: tokens left at `updated`; `updated == 0` is a bucket never used (full).
  package var tokens: Double = 0
  package var updated: Double = 0
  /// Windows: hits in the window starting at `windowStart`, and in the window before it.
  package var windowStart: Double = 0
  package var count: Int64 = 0
  package var previousCount: Int64 = 0

  package init() {}

  package init(tokens: Double, updated: Double, windowStart: Double, count: Int64, previousCount: Int64) {
    self.tokens = tokens
    self.updated = updated
    self.windowStart = windowStart
    self.count = count
    self.previousCount = previousCount
  }

  /// Takes `hits` if they fit (unless `peek`), and says how the counter stands.
  package mutating func take(_ hits: Int64, rule: Rule, now: Double, peek: Bool) -> Decision {
    switch rule.algorithm {
    case .tokenBucket: return takeFromBucket(hits, rule: rule, now: now, peek: peek)
    case .fixedWindow, .slidingWindow: return takeFromWindow(hits, rule: rule, now: now, peek: peek)
    }
  }

  /// Token bucket: holds up to `burst` tokens and gains `limit` per unit.
  private mutating func takeFromBucket(_ hits: Int64, rule: Rule, now: Double, peek: Bool) -> Decision {
    let burst = Double(rule.burst)
    let rate = Double(rule.limit) / rule.unit
    var tokens = updated == 0 ? burst : min(burst, tokens + max(0, now - updated) * rate)
    let wanted = Double(hits)
    // A hair of tolerance so that refills computed in floating point do not lose a whole token.
    let allowed = wanted <= tokens + 1e-9
    if allowed { tokens = max(0, tokens - wanted) }
    if !peek {
      self.tokens = tokens
      self.updated = now
    }
    let retryAfter = allowed ? 0 : (wanted > burst ? burst / rate : (wanted - tokens) / rate)
    return Decision(
      allowed: allowed, limit: rule.burst, remaining: Int64((tokens + 1e-9).rounded(.down)),
      resetAt: now + (burst - tokens) / rate, retryAfter: retryAfter)
  }

  /// Fixed window: at most `limit` hits per calendar window. Sliding window: the hits of the
  /// current window plus those of the previous one weighted by how much of it still overlaps the
  /// last `unit` (the sliding-window counter of Cloudflare and others: exact when traffic within
  /// the previous window was even, and never more than a window's worth off).
  private mutating func takeFromWindow(_ hits: Int64, rule: Rule, now: Double, peek: Bool) -> Decision {
    let unit = rule.unit
    let start = (now / unit).rounded(.down) * unit
    var count = self.count
    var previous = self.previousCount
    if windowStart != start {
      previous = windowStart == start - unit ? count : 0
      count = 0
    }
    let sliding = rule.algorithm == .slidingWindow
    let elapsed = now - start
    let previousWeight = sliding ? 1 - elapsed / unit : 0
    let used = Double(previous) * previousWeight + Double(count)
    let limit = Double(rule.limit)
    let allowed = used + Double(hits) <= limit + 1e-9
    if allowed { count += hits }
    if !peek {
      self.windowStart = start
      self.count = count
      self.previousCount = previous
    }
    let usedAfter = allowed ? used + Double(hits) : used
    let remaining = max(0, Int64((limit - usedAfter + 1e-9).rounded(.down)))
    let resetAt: Double
    if !sliding {
      resetAt = start + unit
    } else {
      resetAt = count > 0 ? start + 2 * unit : (previous > 0 ? start + unit : now)
    }
    return Decision(
      allowed: allowed, limit: rule.limit, remaining: remaining, resetAt: resetAt,
      retryAfter: allowed
        ? 0 : Self.retryAfter(hits, count: count, previous: previous, limit: rule.limit, elapsed: elapsed, unit: unit, sliding: sliding))
  }

  /// How long until `hits` fit in a window that is `elapsed` into its unit.
  private static func retryAfter(
    _ hits: Int64, count: Int64, previous: Int64, limit: Int64, elapsed: Double, unit: Double, sliding: Bool
  ) -> Double {
    let toNextWindow = unit - elapsed
    guard hits <= limit else { return toNextWindow }  // never fits: wait a window and ask again
    guard sliding else { return toNextWindow }
    // Within this window the previous one's share shrinks: find when it is small enough.
    let room = Double(limit - count - hits)
    if room >= 0, previous > 0 {
      let at = unit * (1 - room / Double(previous))
      return max(0, at - elapsed)
    }
    // Otherwise in the next window, where this window's count is the one that shrinks.
    guard count > 0 else { return toNextWindow }
    let at = unit * (1 - Double(limit - hits) / Double(count))
    return toNextWindow + max(0, at)
  }
}
