import Configuration
import Foundation

/// A configuration problem found at start-up. The message names the variable, never a secret value.
package enum ConfigurationError: Error, Equatable, CustomStringConvertible {
  case missing(variable: String, purpose: String)
  case malformed(variable: String, value: String, expected: String)

  package var description: String {
    switch self {
    case .missing(let variable, let purpose):
      return "configuration: \(variable) is required (\(purpose)) but is not set"
    case .malformed(let variable, let value, let expected):
      return "configuration: \(variable)=\(value) is malformed: expected \(expected)"
    }
  }
}

/// Reads Herald's settings from environment variables through swift-configuration.
///
/// Every variable is named in full (`HERALD_DATABASE_URL`). A missing required variable or a value
/// that does not parse throws `ConfigurationError` naming the variable; an unset optional variable
/// takes its default, but a set-and-malformed one is never silently replaced by the default.
/// Secret values are marked as such for swift-configuration and never appear in errors.
package struct Settings: Sendable {
  private let reader: ConfigReader

  package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
    let provider = EnvironmentVariablesProvider(
      environmentVariables: environment,
      secretsSpecifier: .dynamic { key, _ in Settings.isSecretName(key) }
    )
    self.reader = ConfigReader(provider: provider)
  }

  /// Variables whose values must never be printed.
  package static func isSecretName(_ name: String) -> Bool {
    let upper = name.uppercased()
    return ["PASSWORD", "SECRET", "TOKEN", "API_KEY", "DATABASE_URL"].contains { upper.contains($0) }
  }

  private func raw(_ name: String) -> String? {
    // The environment provider maps a single-component key to the variable of the same name.
    guard let value = reader.string(forKey: ConfigKey([name]), isSecret: Self.isSecretName(name)) else {
      return nil
    }
    let trimmed = value.trimmingCharacters(in: .whitespaces)
    return trimmed.isEmpty ? nil : trimmed
  }

  private func shown(_ name: String, _ value: String) -> String {
    Self.isSecretName(name) ? "<redacted>" : "'\(value)'"
  }

  package func string(_ name: String, purpose: String) throws -> String {
    guard let value = raw(name) else { throw ConfigurationError.missing(variable: name, purpose: purpose) }
    return value
  }

  package func string(_ name: String, default defaultValue: String) -> String {
    raw(name) ?? defaultValue
  }

  package func optionalString(_ name: String) -> String? {
    raw(name)
  }

  package func int(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
    guard let value = raw(name) else { return defaultValue }
    guard let parsed = Int(value), range.contains(parsed) else {
      throw ConfigurationError.malformed(
        variable: name, value: shown(name, value),
        expected: "a whole number from \(range.lowerBound) to \(range.upperBound)")
    }
    return parsed
  }

  package func port(_ name: String, default defaultValue: Int) throws -> Int {
    try int(name, default: defaultValue, range: 1...65535)
  }

  /// `true`/`false` (also `1`/`0`, `yes`/`no`).
  package func bool(_ name: String, default defaultValue: Bool) throws -> Bool {
    guard let value = raw(name) else { return defaultValue }
    switch value.lowercased() {
    case "true", "1", "yes": return true
    case "false", "0", "no": return false
    default:
      throw ConfigurationError.malformed(variable: name, value: shown(name, value), expected: "true or false")
    }
  }

  /// `HERALD_PUBLIC_URL`: where the gateway's public routes are reached from outside, an http(s)
  /// URL without query, returned without a trailing slash; nil when unset.
  package func publicURL() throws -> String? {
    guard let text = optionalString("HERALD_PUBLIC_URL") else { return nil }
    guard let parsed = URL(string: text), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""),
      parsed.host?.isEmpty == false, parsed.query == nil, !text.contains(where: \.isWhitespace)
    else {
      throw ConfigurationError.malformed(
        variable: "HERALD_PUBLIC_URL", value: "'\(text)'", expected: "an http(s) URL such as https://mail.example.com")
    }
    return text.hasSuffix("/") ? String(text.dropLast()) : text
  }

  /// A duration written as a number with a unit: `250ms`, `5s`, `2m`, `72h`.
  package func duration(_ name: String, default defaultValue: Duration) throws -> Duration {
    guard let value = raw(name) else { return defaultValue }
    guard let parsed = Self.parseDuration(value) else {
      throw ConfigurationError.malformed(
        variable: name, value: shown(name, value), expected: "a duration such as 250ms, 5s, 2m or 72h")
    }
    return parsed
  }

  static func parseDuration(_ text: String) -> Duration? {
    let units: [(suffix: String, make: (Int64) -> Duration)] = [
      ("ms", { .milliseconds($0) }), ("s", { .seconds($0) }), ("m", { .seconds($0 * 60) }), ("h", { .seconds($0 * 3600) }),
    ]
    for unit in units where text.hasSuffix(unit.suffix) {
      guard let number = Int64(text.dropLast(unit.suffix.count)), number > 0 else { return nil }
      return unit.make(number)
    }
    return nil
  }

  /// `host:port` of another service.
  package func address(_ name: String, purpose: String) throws -> ServiceAddress {
    let value = try string(name, purpose: purpose)
    guard let address = ServiceAddress(value) else {
      throw ConfigurationError.malformed(
        variable: name, value: shown(name, value), expected: "host:port, e.g. 127.0.0.1:7101")
    }
    return address
  }

  package func logLevel(_ name: String = "HERALD_LOG_LEVEL") throws -> LogLevelSetting {
    let value = string(name, default: "info").lowercased()
    guard let level = LogLevelSetting(rawValue: value) else {
      throw ConfigurationError.malformed(
        variable: name, value: "'\(value)'",
        expected: "one of \(LogLevelSetting.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return level
  }
}

/// A `host:port` pair.
package struct ServiceAddress: Sendable, Hashable, CustomStringConvertible {
  package var host: String
  package var port: Int

  package init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  package init?(_ text: String) {
    guard let colon = text.lastIndex(of: ":") else { return nil }
    let host = String(text[..<colon])
    guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
    else { return nil }
    self.init(host: host, port: port)
  }

  package var description: String { "\(host):\(port)" }
}

package enum LogLevelSetting: String, CaseIterable, Sendable {
  case trace, debug, info, notice, warning, error, critical
}
