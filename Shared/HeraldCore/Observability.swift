import Foundation
import Logging
import Metrics
import Prometheus

/// Process-wide logging and metrics set-up, done once by each executable's `main`.
package enum Observability {
  /// Structured logs to standard error: one line per event, metadata as key=value pairs.
  /// Bootstrapping twice is a programming error in swift-log, so tests never call this.
  package static func bootstrap(service: String, level: LogLevelSetting) -> PrometheusCollectorRegistry {
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = Logger.Level(rawValue: level.rawValue) ?? .info
      handler[metadataKey: "service"] = .string(service)
      return handler
    }
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    return registry
  }
}

/// Hides a value from logs and string interpolation.
package struct Secret<Value: Sendable>: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
  package let value: Value
  package init(_ value: Value) { self.value = value }
  package var description: String { "<redacted>" }
  package var debugDescription: String { "<redacted>" }
}
