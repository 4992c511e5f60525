import Foundation
import HeraldCore

/// The sync process's settings (README: configuration).
package struct SyncSettings: Sendable {
  /// The Airtable-style API, e.g. `https://api.airtable.com`.
  package var apiURL = "https://api.airtable.com"
  /// Where jobs' tokens are read (by the variable each job names).
  package var environment: [String: String] = ProcessInfo.processInfo.environment
  /// How often the scheduler looks for jobs that are due.
  package var schedulerInterval: Duration = .seconds(5)
  /// How long the connector waits after a 429 (Airtable: 30 s).
  package var rateLimitWait: Duration = .seconds(30)
  package var requestsPerSecond = 5
  /// How long a stopping process waits for its runs to reach the end of a page before it cancels
  /// them (not a variable: it stays within the 10 s every process gives its background workers
  /// once shutdown begins, `ShutdownEscalation.workers`, and so within Kubernetes' 30 s; tests
  /// shorten it).
  package var stopGrace: Duration = .seconds(8)

  package init() {}

  package static func load(_ settings: Settings) throws -> SyncSettings {
    var result = SyncSettings()
    result.apiURL = settings.string("HERALD_SYNC_API_URL", default: result.apiURL)
    guard let url = URL(string: result.apiURL), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
      throw ConfigurationError.malformed(variable: "HERALD_SYNC_API_URL", value: result.apiURL, expected: "an http(s) URL")
    }
    result.schedulerInterval = try settings.duration("HERALD_SYNC_SCHEDULER_INTERVAL", default: result.schedulerInterval)
    result.rateLimitWait = try settings.duration("HERALD_SYNC_RATE_LIMIT_WAIT", default: result.rateLimitWait)
    return result
  }
}
