import Foundation
import HTTPTypes
import HeraldCore
import HeraldPostgres
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// What a scrape of `/metrics` hands the collectors that read figures at that moment (queue
/// depth, open issues, database connections): gauges written into the process's registry.
package struct MetricsScrape: Sendable {
  package let registry: PrometheusCollectorRegistry

  package init(registry: PrometheusCollectorRegistry) {
    self.registry = registry
  }

  /// Sets the gauge `name` with these labels (every series of one name has the same label names).
  package func gauge(_ name: String, _ labels: [(String, String)] = [], help: String, _ value: Double) {
    registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels).set(value)
  }

  package func gauge(_ name: String, _ labels: [(String, String)] = [], help: String, _ value: Int64) {
    gauge(name, labels, help: help, Double(value))
  }
}

/// The small HTTP listener every Herald process serves Prometheus' text format on
/// (`GET /metrics` at `HERALD_METRICS_HOST:HERALD_METRICS_PORT`), without an API key: it is meant
/// for the cluster's Prometheus, not for the public. Collectors run at each scrape, each within
/// `timeout`; one that fails is logged and counted, and the rest of the figures are served.
package struct MetricsEndpoint: Service {
  package typealias Collector = @Sendable (MetricsScrape) async throws -> Void

  let application: Application<RouterResponder<BasicRequestContext>>
  let address: String

  package init(
    host: String, port: Int, registry: PrometheusCollectorRegistry, collectors: [(name: String, collect: Collector)],
    timeout: Duration = .seconds(5), logger: Logger
  ) {
    let router = Router()
    let scrape = MetricsScrape(registry: registry)
    router.get("metrics") { _, _ -> Response in
      await withTaskGroup(of: Void.self) { group in
        for collector in collectors {
          group.addTask {
            do {
              try await answerWithin(timeout) { try await collector.collect(scrape) }
            } catch {
              registry.makeCounter(
                descriptor: MetricNameDescriptor(
                  metricName: "herald_metrics_collector_errors_total", unitName: "",
                  helpText: "Scrapes in which a collector of figures failed (see the log)"),
                labels: [("collector", collector.name)]
              ).increment()
              logger.warning(
                "a metrics collector failed", metadata: ["collector": "\(collector.name)", "error": "\(error.logDescription)"])
            }
          }
        }
      }
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    self.address = "\(host):\(port)"
    var listenerLogger = logger
    listenerLogger.logLevel = max(logger.logLevel, .notice)
    self.application = Application(
      router: router,
      configuration: .init(address: .hostname(host, port: port), serverName: "herald-metrics"),
      onServerRunning: { channel in
        logger.info("metrics listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
      },
      logger: listenerLogger)
  }

  package func run() async throws {
    do {
      try await application.run()
    } catch let error as IOError {
      throw MetricsListenerError(address: address, reason: error.description)
    }
  }
}

/// The metrics listener could not start (its port is taken, say).
package struct MetricsListenerError: Error, CustomStringConvertible {
  package var address: String
  package var reason: String
  package var description: String {
    "the metrics listener cannot listen on \(address) (HERALD_METRICS_HOST/HERALD_METRICS_PORT): \(reason)"
  }
}
