import Benchmark
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldTestSupport
import Logging
import SwiftProtobuf

/// Rate-limit decisions per second on loopback (issue #5): unary calls (one check each) and
/// batched calls (100 checks each), with p50/p99 latency per call, beside a bare gRPC unary
/// call (grpc.health.v1.Health/Check, which does no work) measured in the same run against the
/// same server. Client and server share this machine's cores.
let benchmarks: @Sendable () -> Void = {
  Benchmark(
    "Rate-limit decisions: unary and batched beside a bare unary baseline",
    configuration: .init(metrics: [.wallClock], warmupIterations: 0, maxDuration: .seconds(600), maxIterations: 1)
  ) { benchmark in
    try await run(benchmark: benchmark)
  }
}

/// 10,000 recipient domains, each its own counter of a `domain=*` limit that never runs out.
let domains = (0..<10_000).map { "domain\($0).example" }

func check(_ n: Int) -> Herald_Ratelimit_V1_RateLimitCheck {
  .with {
    $0.descriptors = [
      .with {
        $0.key = "domain"
        $0.value = domains[n % domains.count]
      }
    ]
  }
}

struct Measured {
  var calls: Int
  var seconds: Double
  var latencies: [Double]

  func percentile(_ p: Double) -> Double {
    let sorted = latencies.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000
  }
}

/// Runs `calls` calls of `call`, `concurrency` at a time, timing each.
func measure(calls: Int, concurrency: Int, _ call: @escaping @Sendable (Int) async throws -> Void) async throws -> Measured {
  let start = ContinuousClock.now
  let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
    for worker in 0..<concurrency {
      group.addTask {
        var own: [Double] = []
        var n = worker
        while n < calls {
          let began = ContinuousClock.now
          try await call(n)
          own.append(seconds(since: began))
          n += concurrency
        }
        return own
      }
    }
    var all: [Double] = []
    for try await own in group { all += own }
    return all
  }
  return Measured(calls: calls, seconds: seconds(since: start), latencies: latencies)
}

func report(_ name: String, _ measured: Measured, decisionsPerCall: Int, concurrency: Int) {
  benchmarkPhase(
    name + " "
      + String(
        format: "calls=%d concurrency=%d seconds=%.2f calls_per_second=%.0f decisions_per_second=%.0f p50_ms=%.3f p99_ms=%.3f",
        measured.calls, concurrency, measured.seconds, Double(measured.calls) / measured.seconds,
        Double(measured.calls * decisionsPerCall) / measured.seconds, measured.percentile(0.5), measured.percentile(0.99)))
}

func run(benchmark: Benchmark) async throws {
  benchmark.stopMeasurement()
  let url = try await TestPostgres.shared.makeDatabase()
  try await withRunningService(RateLimitDefinition.definition, databaseURL: url) { port, _ in
    try await withClient(port: port) { client in
      let limits = Herald_Ratelimit_V1_RateLimitService.Client(wrapping: client)
      let health = Grpc_Health_V1_Health.Client(wrapping: client)
      _ = try await limits.putLimit(
        .with {
          $0.descriptors = [
            .with {
              $0.key = "domain"
              $0.value = "*"
            }
          ]
          $0.requestsPerUnit = 1_000_000_000
          $0.unit = .second
        })
      // Warm up connections and counters.
      _ = try await measure(calls: 2_000, concurrency: 8) { n in
        _ = try await limits.shouldRateLimit(.with { $0.checks = (0..<100).map { check(n * 100 + $0) } })
      }
      benchmark.startMeasurement()
      for concurrency in [1, 32] {
        let calls = concurrency == 1 ? 10_000 : 50_000
        let baseline = try await measure(calls: calls, concurrency: concurrency) { _ in
          _ = try await health.check(.init())
        }
        report("baseline_health_check", baseline, decisionsPerCall: 0, concurrency: concurrency)
        let unary = try await measure(calls: calls, concurrency: concurrency) { n in
          let answer = try await limits.shouldRateLimit(.with { $0.checks = [check(n)] })
          guard answer.overallCode == .ok else { throw BenchmarkFailure("a decision was OVER_LIMIT") }
        }
        report("unary_should_rate_limit", unary, decisionsPerCall: 1, concurrency: concurrency)
      }
      try await compareWithGRPCIO(herald: port)
      for (batch, concurrency) in [(100, 8), (1_000, 4)] {
        let calls = 400_000 / batch
        let batched = try await measure(calls: calls, concurrency: concurrency) { n in
          let answer = try await limits.shouldRateLimit(.with { $0.checks = (0..<batch).map { check(n * batch + $0) } })
          guard answer.statuses.count == batch, answer.overallCode == .ok else { throw BenchmarkFailure("a batch was not all OK") }
        }
        report("batched_\(batch)_checks", batched, decisionsPerCall: batch, concurrency: concurrency)
      }
      benchmark.stopMeasurement()
    }
  }
}

/// A gRPC round trip of Herald's (grpc-swift-2 over HTTP/2 on NIO) beside grpcio's (Python on
/// gRPC's C core), one call at a time, from both clients to three servers (grpcio's standard
/// `grpc_health` servicer, Herald's, and grpc-swift-2's bare): which side the time is spent on.
func compareWithGRPCIO(herald port: Int) async throws {
  guard let python = ProcessInfo.processInfo.environment["HERALD_BENCHMARK_PYTHON"] else {
    benchmarkPhase("grpcio comparison skipped: HERALD_BENCHMARK_PYTHON is not set (scripts/benchmark sets it)")
    return
  }
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-grpcio-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: folder) }
  try grpcioScript.write(toFile: folder + "/health.py", atomically: true, encoding: .utf8)
  let server = try SpawnedProcess(python, [folder + "/health.py", "serve", folder + "/port"], output: folder + "/server.log")
  defer { server.kill() }
  var grpcioPort: Int?
  for _ in 0..<600 where grpcioPort == nil {
    grpcioPort = (try? String(contentsOfFile: folder + "/port", encoding: .utf8)).flatMap { Int($0) }
    if grpcioPort == nil { try await Task.sleep(for: .milliseconds(50)) }
  }
  guard let grpcioPort else { throw BenchmarkFailure("the grpcio server did not start: \(folder)/server.log") }
  /// 10,000 Health/Check calls, one at a time after 2,000 to warm up, from grpc-swift-2 and then
  /// from grpcio.
  func fromBothClients(to server: String, port: Int) async throws {
    try await withClient(port: port) { client in
      let health = Grpc_Health_V1_Health.Client(wrapping: client)
      _ = try await measure(calls: 2_000, concurrency: 1) { _ in _ = try await health.check(.init()) }
      let measured = try await measure(calls: 10_000, concurrency: 1) { _ in _ = try await health.check(.init()) }
      report("health_check swift_client->\(server)", measured, decisionsPerCall: 0, concurrency: 1)
    }
    let (status, output) = try await SpawnedProcess.run(python, [folder + "/health.py", "call", "\(port)", "10000"])
    guard status == 0 else { throw BenchmarkFailure("the grpcio client failed: \(output)") }
    benchmarkPhase("health_check grpcio_client->\(server) \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
  }
  try await fromBothClients(to: "grpcio_server", port: grpcioPort)
  try await fromBothClients(to: "herald_server", port: port)
  // grpc-swift-2's own server with only the health service: no Herald interceptors (request
  // logging and metrics, the service guard, the request checks), so what is left is the library.
  let status = HealthStatus(services: [])
  status.setAll(.serving)
  let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
  let bare = GRPCServer(transport: transport, services: [HealthService(status: status)])
  try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await bare.serve() }
    guard let barePort = try await transport.listeningAddress.ipv4?.port else { throw BenchmarkFailure("no port") }
    try await fromBothClients(to: "bare_grpc_swift_server", port: barePort)
    bare.beginGracefulShutdown()
  }
}

let grpcioScript = #"""
  import sys, time
  from concurrent import futures
  import grpc
  from grpc_health.v1 import health, health_pb2, health_pb2_grpc

  if sys.argv[1] == "serve":
      server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
      servicer = health.HealthServicer()
      servicer.set("", health_pb2.HealthCheckResponse.SERVING)
      health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
      port = server.add_insecure_port("127.0.0.1:0")
      server.start()
      with open(sys.argv[2], "w") as f:
          f.write(str(port))
      server.wait_for_termination()
  else:
      port, calls = sys.argv[2], int(sys.argv[3])
      stub = health_pb2_grpc.HealthStub(grpc.insecure_channel("127.0.0.1:" + port))
      for _ in range(2000):
          stub.Check(health_pb2.HealthCheckRequest())
      latencies = []
      start = time.perf_counter()
      for _ in range(calls):
          began = time.perf_counter()
          stub.Check(health_pb2.HealthCheckRequest())
          latencies.append(time.perf_counter() - began)
      elapsed = time.perf_counter() - start
      latencies.sort()
      print("calls=%d concurrency=1 seconds=%.2f calls_per_second=%.0f p50_ms=%.3f p99_ms=%.3f" % (
          calls, elapsed, calls / elapsed, latencies[calls // 2] * 1000, latencies[int(calls * 0.99)] * 1000))
  """#
