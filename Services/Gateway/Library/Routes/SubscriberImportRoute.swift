import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldProtos
import HeraldServerKit
import Hummingbird
import Synchronization

/// `POST /v1/subscribers/import`: CSV or JSON lines, read as they arrive and streamed on to the
/// campaign service's `ImportSubscribers` in chunks, so an import of any size runs in flat
/// memory. Rows the reader cannot read (a bad CSV value, text that is not UTF-8) go on as row
/// errors, reported beside the service's own checks; the other rows are kept.
struct SubscriberImportRoute: Sendable {
  static let operationID = "campaign.ImportSubscribersFile"
  let campaign: Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  let description: APIDescription

  func register(on group: RouterGroup<GatewayRequestContext>) throws {
    guard let operation = description.operations[Self.operationID] else {
      throw APIDescriptionError("\(Self.operationID) is not in the OpenAPI document")
    }
    let (campaign, validator) = (self.campaign, description.validator)
    group.post("v1/subscribers/import") { request, context in
      try context.require("subscribers:write")
      let query = try RESTRouter.queryParameters(request, operation: operation, validator: validator)
      let format = try Self.format(request, given: query["format"]?.string)
      var options = Herald_Campaign_V1_ImportOptions()
      options.onExisting = query["on_existing"]?.string ?? ""
      options.consentSource = query["consent_source"]?.string ?? ""
      options.listID = query["list_id"]?.string ?? ""
      let body = request.body
      // A body the reader refuses (no header, say) ends the stream; its problem is the answer.
      let refused = Mutex<Problem?>(nil)
      let response = try await ProtoJSON.call("campaign", refused: refused) { [options] in
        try await campaign.importSubscribers(options: .timeout(.seconds(3600))) { writer in
          var reader = ImportReader(format: format)
          func read(_ step: () throws -> [Herald_Campaign_V1_ImportRow]) throws -> [Herald_Campaign_V1_ImportRow] {
            do {
              return try step()
            } catch let problem as Problem {
              refused.withLock { $0 = problem }
              throw problem
            }
          }
          var message = Herald_Campaign_V1_ImportSubscribersRequest()
          message.options = options
          var sentOptions = false
          func send(_ rows: [Herald_Campaign_V1_ImportRow], force: Bool = false) async throws {
            message.rows.append(contentsOf: rows)
            guard message.rows.count >= 500 || (force && (!message.rows.isEmpty || !sentOptions)) else { return }
            try await writer.write(message)
            sentOptions = true
            message = Herald_Campaign_V1_ImportSubscribersRequest()
          }
          for try await buffer in body {
            try await send(try read { try reader.read(buffer) })
          }
          try await send(try read { try reader.finish() }, force: true)
        }
      }
      return try ProtoJSON.response(response)
    }
  }

  /// CSV or JSON lines, from `?format=` or the Content-Type.
  static func format(_ request: Request, given: String?) throws -> ImportReader.Format {
    if let given, let format = ImportReader.Format(rawValue: given) { return format }
    let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    switch type {
    case "text/csv": return .csv
    case "application/x-ndjson", "application/jsonl", "application/jsonlines", "application/json-seq": return .ndjson
    default:
      throw Problem(
        status: .unsupportedMediaType,
        detail: "send text/csv or application/x-ndjson (or say ?format=csv|ndjson); got '\(type)'", field: "Content-Type")
    }
  }
}
