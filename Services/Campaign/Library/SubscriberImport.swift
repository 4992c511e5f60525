import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import SwiftProtobuf

/// Bulk import of subscribers (SPEC §2): chunks of checked rows written in one transaction each;
/// bad rows are reported and the valid ones kept. Consent from an import never overrides an
/// earlier unsubscribe.
package struct SubscriberImporter: Sendable {
  package static let chunkSize = 500
  package static let maxRowBytes = 64 * 1024
  package static let maxReportedErrors = 1000

  package struct Options: Sendable {
    package var updateExisting: Bool
    package var consentSource: String
    package var listID: UUID?
  }

  package struct Row: Sendable {
    package var number: Int64
    package var subscriber: NewSubscriber
  }

  package enum Outcome: Sendable, Equatable {
    case created, updated, existing
    case failed(field: String, message: String)
  }

  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// Checks the options of the first message; the errors name `options.<field>`.
  package func options(_ message: Herald_Campaign_V1_ImportOptions) async throws -> Options {
    let onExisting = message.onExisting.isEmpty ? "skip" : message.onExisting
    guard onExisting == "skip" || onExisting == "update" else {
      throw RPCError.field("options.on_existing", .invalidArgument, "options.on_existing '\(onExisting)' must be skip or update")
    }
    let source = message.consentSource.trimmingCharacters(in: .whitespacesAndNewlines)
    var listID: UUID?
    if !message.listID.isEmpty {
      guard let id = UUID(text: message.listID) else {
        throw RPCError.field("options.list_id", .invalidArgument, "options.list_id '\(message.listID)' is not a UUID")
      }
      let found = try await client.query("SELECT 1 FROM campaign.lists WHERE id = \(id)", logger: logger).collect()
      guard !found.isEmpty else { throw CampaignStore.notFound("list", id, field: "options.list_id") }
      listID = id
    }
    return Options(updateExisting: onExisting == "update", consentSource: source.isEmpty ? "import" : source, listID: listID)
  }

  /// Checks one row like CreateSubscriber, with the import's default consent source.
  package static func validate(_ row: Herald_Campaign_V1_ImportRow, options: Options) -> Result<Row, SubscriberValidation.Invalid> {
    if !row.error.isEmpty {
      return .failure(.init(field: row.errorField.isEmpty ? "row" : row.errorField, message: row.error))
    }
    var request = row.subscriber
    let size = request.email.utf8.count + request.phone.utf8.count + request.firstName.utf8.count + request.lastName.utf8.count
      + request.attributesJson.utf8.count + request.emailConsent.source.utf8.count + request.smsConsent.source.utf8.count
    guard size <= maxRowBytes else {
      return .failure(.init(field: "row", message: "the row is \(size) bytes; at most \(maxRowBytes)"))
    }
    if request.emailConsent.subscribed && request.emailConsent.source.isEmpty { request.emailConsent.source = options.consentSource }
    if request.smsConsent.subscribed && request.smsConsent.source.isEmpty { request.smsConsent.source = options.consentSource }
    do throws(SubscriberValidation.Invalid) {
      return .success(Row(number: row.row, subscriber: try CampaignService.validate(request)))
    } catch {
      return .failure(error)
    }
  }

  /// Writes a chunk in one transaction. Should the transaction fail as a whole (a database error
  /// no check foresaw), each row is retried on its own so that one bad row loses nothing else.
  package func write(_ rows: [Row], options: Options) async throws -> [Outcome] {
    let store = CampaignStore(client: client, logger: logger)
    let logger = self.logger
    do {
      return try await store.transaction { connection in
        var outcomes: [Outcome] = []
        for row in rows { outcomes.append(try await Self.write(row, options: options, on: connection, logger: logger)) }
        return outcomes
      }
    } catch where error.postgresError != nil && rows.count > 1 {
      logger.warning("import chunk failed; retrying its rows one by one", metadata: ["error": "\(error.databaseMessage)"])
      var outcomes: [Outcome] = []
      for row in rows {
        do {
          outcomes.append(contentsOf: try await write([row], options: options))
        } catch where error.postgresError != nil {
          outcomes.append(.failed(field: "row", message: "the database refused the row: \(error.databaseMessage)"))
        }
      }
      return outcomes
    }
  }

  private static func write(_ row: Row, options: Options, on connection: PostgresConnection, logger: Logger) async throws -> Outcome {
    let new = row.subscriber
    let matches = try await connection.query(
      """
      SELECT \(unescaped: PostgresSubscriberStore.columns) FROM campaign.subscribers
      WHERE (email = \(new.email) AND \(new.email)::text IS NOT NULL) OR (phone = \(new.phone) AND \(new.phone)::text IS NOT NULL)
      FOR UPDATE
      """, logger: logger
    ).collect().map(PostgresSubscriberStore.record)
    let outcome: Outcome
    let id: UUID
    switch matches.count {
    case 0:
      let inserted = try await connection.query(
        """
        INSERT INTO campaign.subscribers (
          email, phone, first_name, last_name, attributes,
          email_subscribed, email_consent_source, email_consented_at, sms_subscribed, sms_consent_source, sms_consented_at)
        VALUES (
          \(new.email), \(new.phone), \(new.firstName), \(new.lastName), \(new.attributesJSON)::jsonb,
          \(new.emailConsentSource != nil), \(new.emailConsentSource), CASE WHEN \(new.emailConsentSource != nil) THEN now() END,
          \(new.smsConsentSource != nil), \(new.smsConsentSource), CASE WHEN \(new.smsConsentSource != nil) THEN now() END)
        ON CONFLICT DO NOTHING
        RETURNING id, now()
        """, logger: logger
      ).collect().first?.decode((UUID, Date).self)
      // Another import inserted the same address a moment ago: report it as existing.
      guard let (newID, now) = inserted else { return .existing }
      for (channel, source) in [("email", new.emailConsentSource), ("sms", new.smsConsentSource)] {
        guard let source else { continue }
        try await PostgresSubscriberStore.record(
          ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: now), for: newID, connection: connection,
          logger: logger)
      }
      (id, outcome) = (newID, .created)
    case 1:
      let existing = matches[0]
      id = existing.id
      if let email = new.email, let other = existing.email, email != other {
        return .failed(field: "email", message: "the phone belongs to a subscriber with another email (\(other))")
      }
      if let phone = new.phone, let other = existing.phone, phone != other {
        return .failed(field: "phone", message: "the email belongs to a subscriber with another phone")
      }
      guard options.updateExisting else {
        outcome = .existing
        break
      }
      try await connection.query(
        """
        UPDATE campaign.subscribers SET
          email = coalesce(email, \(new.email)), phone = coalesce(phone, \(new.phone)),
          first_name = CASE WHEN \(new.firstName) <> '' THEN \(new.firstName) ELSE first_name END,
          last_name = CASE WHEN \(new.lastName) <> '' THEN \(new.lastName) ELSE last_name END,
          attributes = attributes || \(new.attributesJSON)::jsonb, updated_at = now()
        WHERE id = \(id)
        """, logger: logger)
      // Consent is added only where it was never withdrawn: an import cannot undo an unsubscribe.
      for (channel, source, consent) in [
        ("email", new.emailConsentSource, existing.emailConsent), ("sms", new.smsConsentSource, existing.smsConsent),
      ] {
        guard let source, !consent.subscribed, consent.unsubscribedAt == nil else { continue }
        let now = try await connection.query(
          """
          UPDATE campaign.subscribers SET \(unescaped: channel)_subscribed = true, \(unescaped: channel)_consent_source = \(source),
            \(unescaped: channel)_consented_at = now()
          WHERE id = \(id) AND \(unescaped: channel == "email" ? "email" : "phone") IS NOT NULL
          RETURNING now()
          """, logger: logger
        ).collect().first?.decode(Date.self)
        if let now {
          try await PostgresSubscriberStore.record(
            ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: now), for: id, connection: connection,
            logger: logger)
        }
      }
      outcome = .updated
    default:
      return .failed(field: "email", message: "the email and the phone belong to two different subscribers")
    }
    if let list = options.listID {
      try await connection.query(
        "INSERT INTO campaign.list_members (list_id, subscriber_id) VALUES (\(list), \(id)) ON CONFLICT DO NOTHING", logger: logger)
    }
    return outcome
  }
}

extension CampaignService {
  package func importSubscribers(
    request: RPCAsyncSequence<Herald_Campaign_V1_ImportSubscribersRequest, any Error>, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ImportSubscribersResponse {
    var response = Herald_Campaign_V1_ImportSubscribersResponse()
    var options: SubscriberImporter.Options?
    var pending: [SubscriberImporter.Row] = []

    func report(_ row: Int64, _ field: String, _ message: String) {
      response.failed += 1
      guard response.errors.count < SubscriberImporter.maxReportedErrors else { return }
      response.errors.append(.with {
        $0.row = row
        $0.field = field
        $0.message = message
      })
    }
    func flush() async throws {
      guard let options, !pending.isEmpty else { return }
      let outcomes = try await importer.write(pending, options: options)
      for (row, outcome) in zip(pending, outcomes) {
        switch outcome {
        case .created: response.created += 1
        case .updated: response.updated += 1
        case .existing: response.existing += 1
        case .failed(let field, let message): report(row.number, field, message)
        }
      }
      pending.removeAll(keepingCapacity: true)
    }

    for try await message in request {
      if options == nil { options = try await importer.options(message.options) }
      for row in message.rows {
        switch SubscriberImporter.validate(row, options: options!) {
        case .success(let valid): pending.append(valid)
        case .failure(let error): report(row.row, error.field, error.message)
        }
        if pending.count >= SubscriberImporter.chunkSize { try await flush() }
      }
    }
    try await flush()
    // Errors are reported in row order even when chunks interleave checks and writes.
    response.errors.sort { $0.row < $1.row }
    return response
  }
}

extension CampaignService {
  var importer: SubscriberImporter { SubscriberImporter(client: campaigns.client, logger: campaigns.logger) }
}
