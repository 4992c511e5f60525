import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Every statement the verification service runs on its own schema (`verification`): reports,
/// tracked issues, alerts and repairs. The checks themselves read the other schemas (`Checks`,
/// `Catalog`, `LedgerChecker`), and a repair's plan runs on the repair role's connection
/// (`RepairDesk`); neither is state of this service.
package struct VerificationStore: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// ISO 8601 with fractional seconds: reports a few hundred milliseconds apart keep their order.
  static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
  /// Reports, findings, plans and runs are stored as JSON documents in snake case.
  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.dateEncodingStrategy = .custom { date, encoder in
      var container = encoder.singleValueContainer()
      try container.encode(date.formatted(dateStyle))
    }
    return encoder
  }()
  static let decoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    decoder.dateDecodingStrategy = .custom { decoder in
      let text = try decoder.singleValueContainer().decode(String.self)
      guard let date = try? dateStyle.parse(text) else {
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not an ISO 8601 time"))
      }
      return date
    }
    return decoder
  }()

  static func json(_ value: some Encodable) throws -> String {
    String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try decoder.decode(type, from: Data(text.utf8))
  }

  /// Drops the scratch schemas (`verify_*`) a drift check that crashed half-way left behind.
  func dropScratchSchemas() async throws {
    var names: [String] = []
    for try await name in try await client.query(
      "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'verify\\_%'", logger: logger
    ).decode(String.self) {
      names.append(name)
    }
    for name in names {
      try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(DriftCheck.quoted(name)) CASCADE"), logger: logger)
    }
  }

  /// Open issues by severity (every severity, zero included), for `herald_verification_issues`.
  package func openIssuesBySeverity() async throws -> [Finding.Severity: Int] {
    var counts = Dictionary(uniqueKeysWithValues: Finding.Severity.allCases.map { ($0, 0) })
    for try await (severity, count) in try await client.query(
      "SELECT severity, count(*)::int FROM verification.issues WHERE open GROUP BY severity", logger: logger
    ).decode((String, Int).self) {
      if let known = Finding.Severity(rawValue: severity) { counts[known] = count }
    }
    return counts
  }
}
