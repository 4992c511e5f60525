import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging

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

  let store: CampaignStore

  package init(store: CampaignStore) {
    self.store = store
  }

  /// Checks the options of the first message; the errors name `options.<field>`.
  package func options(_ message: Herald_Campaign_V1_ImportOptions) async throws -> Options {
    // The request's strings are checked here, not by the shared interceptor (`ChecksOwnStrings`).
    if let field = StringFieldCheck.firstNUL(in: message) {
      throw RPCError.field("options.\(field)", .invalidArgument, StringFieldCheck.holdsNUL("options.\(field)"))
    }
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
      guard try await store.listExists(id: id) else { throw CampaignStore.notFound("list", id, field: "options.list_id") }
      listID = id
    }
    return Options(updateExisting: onExisting == "update", consentSource: source.isEmpty ? "import" : source, listID: listID)
  }

  /// Checks one row like CreateSubscriber, with the import's default consent source. A string
  /// holding NUL (which PostgreSQL cannot store) fails the row naming its field.
  package static func validate(_ row: Herald_Campaign_V1_ImportRow, options: Options) -> Result<Row, SubscriberValidation.Invalid> {
    if !row.error.isEmpty {
      return .failure(.init(field: row.errorField.isEmpty ? "row" : row.errorField, message: row.error))
    }
    var request = row.subscriber
    if let field = StringFieldCheck.firstNUL(in: request) {
      return .failure(.init(field: field, message: StringFieldCheck.holdsNUL(field)))
    }
    let size =
      request.email.utf8.count + request.phone.utf8.count + request.firstName.utf8.count + request.lastName.utf8.count
      + request.attributesJson.utf8.count + request.emailConsent.source.utf8.count + request.smsConsent.source.utf8.count
      + request.whatsapp.utf8.count + request.whatsappConsent.source.utf8.count
    guard size <= maxRowBytes else {
      return .failure(.init(field: "row", message: "the row is \(size) bytes; at most \(maxRowBytes)"))
    }
    if request.emailConsent.subscribed && request.emailConsent.source.isEmpty { request.emailConsent.source = options.consentSource }
    if request.smsConsent.subscribed && request.smsConsent.source.isEmpty { request.smsConsent.source = options.consentSource }
    if request.whatsappConsent.subscribed && request.whatsappConsent.source.isEmpty {
      request.whatsappConsent.source = options.consentSource
    }
    do throws(SubscriberValidation.Invalid) {
      return .success(Row(number: row.row, subscriber: try CampaignService.validate(request)))
    } catch {
      return .failure(error)
    }
  }

  /// Writes a chunk in one transaction. Should the transaction fail as a whole (a database error
  /// no check foresaw), each row is retried on its own so that one bad row loses nothing else.
  package func write(_ rows: [Row], options: Options) async throws -> [Outcome] {
    do {
      return try await store.importRows(rows, options: options)
    } catch  where error.postgresError != nil && rows.count > 1 {
      store.logger.warning("import chunk failed; retrying its rows one by one", metadata: ["error": "\(error.logDescription)"])
      var outcomes: [Outcome] = []
      for row in rows {
        do {
          outcomes.append(contentsOf: try await write([row], options: options))
        } catch  where error.postgresError != nil {
          outcomes.append(.failed(field: "row", message: "the database refused the row: \(error.databaseMessage)"))
        }
      }
      return outcomes
    }
  }
}

/// The import checks its rows' strings itself, so that a row holding NUL is reported on its own
/// and the other rows are still imported (the shared interceptor would refuse the whole stream).
extension Herald_Campaign_V1_ImportSubscribersRequest: ChecksOwnStrings {}
