import Foundation
import Logging
import Synchronization

/// The counters this replica owns, in memory, and the limits they follow. Hour and day counters
/// are read from the database the first time they are touched here and written back by `flush`.
package final class RateLimiter: Sendable {
  struct Counter {
    var limitKey: String
    var state: CounterState
  }

  struct Table {
    /// Limits by the sorted list of their descriptor keys (`domain,provider`).
    var limits: [String: [LimitDefinition]] = [:]
    var counters: [String: Counter] = [:]
    var dirty: Set<String> = []
    /// How many edits this replica's API made (`upsertLimit`, `removeLimit`).
    var edits = 0
  }

  private let table = Mutex(Table())
  let store: RateLimitStore?
  let logger: Logger

  /// `store` nil keeps everything in memory (unit tests of the math).
  package init(store: RateLimitStore?, logger: Logger) {
    self.store = store
    self.logger = logger
  }

  // MARK: Limits

  /// Counts this replica's API edits; read it before reading the limits to pass to `setLimits`.
  package var editGeneration: Int { table.withLock { $0.edits } }

  /// Replaces the limits (every heartbeat re-reads them): nothing is rebuilt when they are the same.
  /// `readSince` is `editGeneration` as it was before the limits were read: when an edit through
  /// the API came in meanwhile, what was read may predate it (a limit just put would vanish, one
  /// just deleted come back, until the next re-read), so it is not applied and false is returned:
  /// read again (`reloadLimits`).
  @discardableResult
  package func setLimits(_ limits: [LimitDefinition], readSince generation: Int) -> Bool {
    let grouped = Dictionary(grouping: limits.sorted { $0.key < $1.key }) { Self.signature($0.descriptors) }
    return table.withLock { table in
      guard table.edits == generation else { return false }
      guard table.limits != grouped else { return true }
      table.limits = grouped
      // Counters of removed limits go; counters whose limit changed keep their state.
      let keys = Set(limits.map(\.key))
      table.counters = table.counters.filter { keys.contains($0.value.limitKey) }
      table.dirty = table.dirty.filter { table.counters[$0] != nil }
      return true
    }
  }

  /// Reads the limits from `store` and applies them, reading again (up to three times) when an
  /// API edit came in during a read.
  package func reloadLimits(from store: RateLimitStore) async throws {
    for _ in 0..<3 {
      let generation = editGeneration
      if setLimits(try await store.limits(), readSince: generation) { return }
    }
  }

  package func upsertLimit(_ limit: LimitDefinition) {
    table.withLock { table in
      table.edits += 1
      let signature = Self.signature(limit.descriptors)
      table.limits[signature, default: []].removeAll { $0.key == limit.key }
      table.limits[signature, default: []].append(limit)
      table.limits[signature]?.sort { $0.key < $1.key }
    }
  }

  package func removeLimit(key: String) {
    table.withLock { table in
      table.edits += 1
      let signature = Self.signature(LimitDefinition.descriptors(fromKey: key))
      table.limits[signature]?.removeAll { $0.key == key }
      for (counterKey, counter) in table.counters where counter.limitKey == key {
        table.counters[counterKey] = nil
        table.dirty.remove(counterKey)
      }
    }
  }

  /// How many limits this replica applies (as the last re-read or API edit left them).
  package var limitCount: Int {
    table.withLock { $0.limits.values.reduce(0) { $0 + $1.count } }
  }

  /// The limit for a check: same descriptor keys, each value equal or `*`; the one with the most
  /// exact values wins (then the smaller key, so every replica picks the same).
  package func limit(for descriptors: [(key: String, value: String)]) -> LimitDefinition? {
    table.withLock { Self.match(descriptors, in: $0.limits) }
  }

  /// The limit of each check, under one lock (a batch is routed with it).
  package func limits(for checks: [Check]) -> [LimitDefinition?] {
    table.withLock { table in checks.map { Self.match($0.descriptors, in: table.limits) } }
  }

  static func signature(_ descriptors: [(key: String, value: String)]) -> String {
    descriptors.map(\.key).joined(separator: ",")
  }

  static func match(_ descriptors: [(key: String, value: String)], in limits: [String: [LimitDefinition]]) -> LimitDefinition? {
    var best: (limit: LimitDefinition, exact: Int)?
    for limit in limits[signature(descriptors)] ?? [] {
      var exact = 0
      var matches = true
      for (wanted, given) in zip(limit.descriptors, descriptors) {
        if wanted.value == given.value {
          exact += 1
        } else if wanted.value != "*" {
          matches = false
          break
        }
      }
      guard matches else { continue }
      if best == nil || exact > best!.exact || (exact == best!.exact && limit.key < best!.limit.key) {
        best = (limit, exact)
      }
    }
    return best?.limit
  }

  // MARK: Decisions

  /// Decides `checks` in order (a later check sees what an earlier one took). `now` is seconds
  /// since 1970.
  package func decide(_ checks: [Check], peek: Bool, now: Double = Date().timeIntervalSince1970) async throws -> [Outcome] {
    // Hour and day counters not in memory yet are read first (outside the lock).
    var loaded: [String: CounterState] = [:]
    if let store {
      let missing = table.withLock { table -> [String] in
        var keys: Set<String> = []
        for check in checks {
          let key = check.key
          guard table.counters[key] == nil, let limit = Self.match(check.descriptors, in: table.limits), limit.unit.isPersisted
          else { continue }
          keys.insert(key)
        }
        return keys.sorted()
      }
      if !missing.isEmpty {
        let saved = try await store.counters(missing)
        for key in missing { loaded[key] = saved[key] ?? CounterState() }
      }
    }
    let loadedStates = loaded
    return table.withLock { table in
      checks.map { check in
        let key = check.key
        guard let limit = Self.match(check.descriptors, in: table.limits) else { return Outcome(limit: nil, decision: nil) }
        // What was read just now serves only if no newer state is in memory.
        var counter = table.counters[key] ?? Counter(limitKey: limit.key, state: loadedStates[key] ?? CounterState())
        counter.limitKey = limit.key
        let decision = counter.state.take(check.hits, rule: limit.rule(at: now), now: now, peek: peek)
        if !peek {
          table.counters[key] = counter
          if limit.unit.isPersisted && store != nil { table.dirty.insert(key) }
        }
        return Outcome(limit: limit, decision: decision)
      }
    }
  }

  /// The counters held here, as they stand at `now` (nothing is taken).
  package func snapshot(now: Double = Date().timeIntervalSince1970) -> [(key: String, limit: LimitDefinition, decision: Decision)] {
    table.withLock { table in
      table.counters.keys.sorted().compactMap { key in
        guard var counter = table.counters[key], let limit = Self.match(LimitDefinition.descriptors(fromKey: key), in: table.limits)
        else { return nil }
        return (key, limit, counter.state.take(0, rule: limit.rule(at: now), now: now, peek: true))
      }
    }
  }

  // MARK: Persistence and ownership

  /// Writes the hour and day counters changed since the last flush.
  package func flush() async throws {
    guard let store else { return }
    let changed = table.withLock { table -> [SavedCounter] in
      defer { table.dirty.removeAll() }
      return table.dirty.sorted().compactMap { key in
        table.counters[key].map { SavedCounter(key: key, limitKey: $0.limitKey, state: $0.state) }
      }
    }
    do {
      try await store.saveCounters(changed)
    } catch {
      table.withLock { table in for counter in changed { table.dirty.insert(counter.key) } }
      throw error
    }
  }

  /// Saves changed counters, then forgets those this replica no longer owns (so that their new
  /// owner reads the latest, and this replica reads them again if they come back) and those back
  /// at their full limit (a `*` limit would otherwise keep one per value ever seen).
  package func release(where notOwned: (String) -> Bool, now: Double = Date().timeIntervalSince1970) async throws {
    try await flush()
    table.withLock { table in
      for (key, counter) in table.counters where !table.dirty.contains(key) {
        var state = counter.state
        let full: Bool
        if let limit = Self.match(LimitDefinition.descriptors(fromKey: key), in: table.limits) {
          let decision = state.take(0, rule: limit.rule(at: now), now: now, peek: true)
          full = decision.remaining >= decision.limit
        } else {
          full = true
        }
        if full || notOwned(key) { table.counters[key] = nil }
      }
    }
  }
}
