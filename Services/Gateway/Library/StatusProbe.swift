import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Hummingbird
import Prometheus
import SwiftProtobuf

/// Asks every back-end service's `grpc.health.v1.Health/Check`, concurrently, with a short deadline.
struct StatusProbe: Sendable {
  struct Target: Sendable {
    var name: String
    var address: ServiceAddress
    var client: GRPCClient<HTTP2ClientTransport.Posix>
  }

  let targets: [Target]
  let timeout: Duration
  let registry: PrometheusCollectorRegistry
  var delivery: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>?
  var rateLimit: Herald_Ratelimit_V1_RateLimitService.Client<HTTP2ClientTransport.Posix>?
  var verification: Herald_Verification_V1_VerificationService.Client<HTTP2ClientTransport.Posix>?

  func check() async -> SystemStatus {
    async let overview = deliveryOverview()
    async let limits = rateLimitOverview()
    async let verified = verificationOverview()
    let results = await withTaskGroup(of: ServiceHealth.self) { group in
      for target in targets {
        group.addTask { await probe(target) }
      }
      var results: [ServiceHealth] = []
      for await result in group { results.append(result) }
      return results.sorted { $0.name < $1.name }
    }
    for result in results {
      registry.makeGauge(
        descriptor: MetricNameDescriptor(
          metricName: "herald_service_up", unitName: "", helpText: "1 when the back-end answers SERVING to the gateway's probe, else 0"),
        labels: [("backend", result.name)]
      )
      .set(Int64(result.status == "SERVING" ? 1 : 0))
    }
    let degraded = results.filter { $0.status != "SERVING" }.map(\.name)
    return SystemStatus(
      status: degraded.isEmpty ? "ok" : "degraded", degraded: degraded, services: results, delivery: await overview,
      rateLimit: await limits, verification: await verified, checkedAt: Date())
  }

  private func verificationOverview() async -> VerificationOverview? {
    guard let verification else { return nil }
    var overview = VerificationOverview()
    do {
      // Both asked at once; the issues are kept even when no report exists yet.
      async let issues = verification.listIssues(.init(), options: .timeout(timeout))
      async let latest = verification.getReport(.with { $0.id = "latest" }, options: .timeout(timeout))
      let open = try await issues.issues
      for issue in open { overview.openIssues["\(issue.severity)".uppercased(), default: 0] += 1 }
      overview.alerts = open.filter(\.hasAlertedAt).map {
        VerificationOverview.Alert(
          fingerprint: $0.fingerprint, severity: "\($0.severity)".uppercased(), description: $0.description_p, alertedAt: $0.alertedAt.date)
      }
      let report = try await latest
      overview.reportId = report.id
      overview.status = "\(report.overallStatus)"
      overview.finishedAt = report.finishedAt.date
      overview.summary = report.summary
    } catch let error as RPCError where error.code == .notFound {
      overview.summary = "no verification has run yet"
    } catch {
      overview.error = RPCError.describe(error)
    }
    return overview
  }

  private func deliveryOverview() async -> DeliveryOverview? {
    guard let delivery else { return nil }
    var overview = DeliveryOverview()
    do {
      async let stats = delivery.getQueueStats(.init(), options: .timeout(timeout))
      async let providers = delivery.listProviders(.init(), options: .timeout(timeout))
      let (queue, listed) = try await (stats, providers)
      overview.queue = queue.byStatus
      overview.ambiguous = queue.ambiguous
      overview.providers = listed.providers.map { provider in
        DeliveryOverview.Provider(
          name: provider.name, channel: "\(provider.channel)", breakerState: provider.status.breakerState,
          errorRate: provider.status.errorRate, latencyMs: (provider.status.latencyMsAverage * 100).rounded() / 100,
          lastError: provider.status.lastError.isEmpty ? nil : provider.status.lastError)
      }
    } catch {
      overview.error = RPCError.describe(error)
    }
    return overview
  }

  private func rateLimitOverview() async -> RateLimitOverview? {
    guard let rateLimit else { return nil }
    var overview = RateLimitOverview()
    do {
      let state = try await rateLimit.getRateLimitState(.init(), options: .timeout(timeout))
      overview.members = state.members.map { "\($0.id)@\($0.address)" }
      overview.limits = state.limits.count
      overview.counters = state.counters.count
      overview.overLimit = state.counters.filter { $0.remaining == 0 }.count
      overview.unreachable = state.unreachable
    } catch {
      overview.error = RPCError.describe(error)
    }
    return overview
  }

  private func probe(_ target: Target) async -> ServiceHealth {
    let health = Grpc_Health_V1_Health.Client(wrapping: target.client)
    let started = ContinuousClock.now
    var result = ServiceHealth(name: target.name, address: target.address.description, status: "UNREACHABLE")
    do {
      let response = try await health.check(Grpc_Health_V1_HealthCheckRequest(), options: .timeout(timeout))
      result.latencyMs = ((ContinuousClock.now - started).milliseconds * 100).rounded() / 100
      result.status = response.status.name
    } catch {
      result.error = RPCError.describe(error)
    }
    return result
  }
}
