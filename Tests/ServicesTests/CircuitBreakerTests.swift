import HeraldDelivery
import Testing

/// The breaker's states over a controlled clock (SPEC §3).
@Suite struct CircuitBreakerTests {
  let start = ContinuousClock.now
  func at(_ seconds: Int) -> ContinuousClock.Instant { start.advanced(by: .seconds(seconds)) }

  @Test func opensAtTheFailureRateProbesWhenHalfOpenAndClosesOnSuccess() {
    let breaker = CircuitBreaker(policy: BreakerPolicy(window: .seconds(10), failureRate: 0.5, minimumAttempts: 4, openFor: .seconds(5)))
    breaker.record(success: true, latency: .milliseconds(10), now: at(0))
    breaker.record(success: false, latency: .milliseconds(30), error: "503", now: at(0))
    breaker.record(success: false, latency: .milliseconds(30), error: "503", now: at(1))
    #expect(breaker.snapshot(now: at(1)).state == .closed)  // 3 attempts: fewer than the minimum
    breaker.record(success: true, latency: .milliseconds(10), now: at(1))
    #expect(breaker.snapshot(now: at(1)).state == .open)  // 2 of 4 failed
    #expect(breaker.snapshot(now: at(1)).errorRate == 0.5)
    #expect(breaker.snapshot(now: at(1)).averageLatencyMilliseconds == 20)
    #expect(!breaker.admit(now: at(3)))
    #expect(breaker.admit(now: at(7)))  // half-open: one probe
    #expect(!breaker.admit(now: at(7)))
    breaker.record(success: false, latency: .milliseconds(5), error: "timeout", now: at(7))
    #expect(breaker.snapshot(now: at(7)).state == .open)
    #expect(breaker.snapshot(now: at(7)).lastError == "timeout")
    #expect(breaker.admit(now: at(13)))
    breaker.record(success: true, latency: .milliseconds(5), now: at(13))
    #expect(breaker.snapshot(now: at(13)).state == .closed)
    #expect(breaker.admit(now: at(13)))
  }

  @Test func oldOutcomesLeaveTheWindow() {
    let breaker = CircuitBreaker(policy: BreakerPolicy(window: .seconds(10), failureRate: 0.6, minimumAttempts: 2, openFor: .seconds(5)))
    for second in 0..<5_000 {
      breaker.record(success: second % 3 != 0, latency: .milliseconds(1), now: at(second / 100))
    }
    let snapshot = breaker.snapshot(now: at(49))
    #expect(snapshot.state == .closed)
    #expect(snapshot.attemptsInWindow == 1_100)  // seconds 39...49, 100 a second
    #expect(abs(snapshot.errorRate - 1.0 / 3) < 0.01)
    #expect(snapshot.sent + snapshot.failed == 5_000)
    #expect(breaker.snapshot(now: at(100)).attemptsInWindow == 0)
  }
}
