import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1

/// The connector for one table of an Airtable-style REST API (SPEC §5): schema, paged listing by
/// offset cursor (restarted when the cursor expires), batched writes of at most 10 records with
/// upsert on merge fields, `typecast` off, at most 5 requests in any second per base,
/// 429 → wait 30 s and retry, and 422 on a batch → split it to find the refused records.
package struct AirtableClient: Sendable {
  package struct Configuration: Sendable {
    /// e.g. `https://api.airtable.com`.
    package var endpoint: String
    package var base: String
    /// Table id or name.
    package var table: String
    package var token: Secret<String>
    package var requestsPerSecond = 5
    /// How long to wait after a 429 before trying again.
    package var rateLimitWait: Duration = .seconds(30)
    /// 429s in a row for one request before giving up (the run then stops, resumable).
    package var maxRateLimitRetries = 20
    /// Retries of a request answered 500, 502, 503 or 504, waiting 1×, 2×, 4× `serverErrorWait`.
    package var serverErrorRetries = 3
    package var serverErrorWait: Duration = .seconds(1)
    /// How many times a listing starts over when its cursor expires.
    package var maxIteratorRestarts = 3
    package var requestTimeout: Duration = .seconds(30)

    package init(endpoint: String, base: String, table: String, token: String) {
      self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
      self.base = base
      self.table = table
      self.token = Secret(token)
    }
  }

  package static let maxBatch = 10
  /// Errors about one record of a write (as opposed to the request as a whole): a batch answered
  /// with one of these is halved until the refused records stand alone.
  static let recordErrorTypes: Set<String> = [
    "INVALID_VALUE_FOR_COLUMN", "UNKNOWN_FIELD_NAME", "INVALID_MULTIPLE_CHOICE_OPTIONS", "ROW_DOES_NOT_EXIST",
    "MODEL_ID_NOT_FOUND", "INVALID_RECORDS",
  ]
  package static let maxPageSize = 100

  package let configuration: Configuration
  package let stats: ConnectorStats
  let http: HTTPClient
  let pacer: RequestPacer

  package init(configuration: Configuration, http: HTTPClient = .shared, stats: ConnectorStats = ConnectorStats()) {
    self.configuration = configuration
    self.http = http
    self.stats = stats
    self.pacer = RequestPacer.forBase("\(configuration.endpoint)/\(configuration.base)", perSecond: configuration.requestsPerSecond)
  }

  // MARK: - Schema

  /// The table's fields; an error names the table when the base has none by that id or name.
  package func fields() async throws -> [RemoteField] {
    let answer = try await send(.GET, path: "/v0/meta/bases/\(escaped(configuration.base))/tables")
    guard case .array(let tables) = answer.object?["tables"] ?? .null else {
      throw AirtableError(status: 200, type: "UNEXPECTED_REPLY", message: "no \"tables\" in the schema reply", request: "GET schema")
    }
    for case .object(let table) in tables
    where table["id"]?.stringValue == configuration.table || table["name"]?.stringValue == configuration.table {
      guard case .array(let fields) = table["fields"] ?? .null else { return [] }
      return fields.compactMap { field in
        guard case .object(let field) = field, let id = field["id"]?.stringValue, let name = field["name"]?.stringValue else { return nil }
        return RemoteField(id: id, name: name, type: field["type"]?.stringValue ?? "")
      }
    }
    throw AirtableError(
      status: nil, type: "TABLE_NOT_FOUND", message: "base \(configuration.base) has no table '\(configuration.table)'",
      request: "GET /v0/meta/bases/\(configuration.base)/tables")
  }

  // MARK: - Listing

  /// Every record matching `filterByFormula`, page by page (`pageSize` ≤ 100), fields by id.
  /// When the cursor expires mid-way the listing starts over from the first page (pages already
  /// handed out come again; callers dedupe on record id and modified time).
  /// `sortField` (name or id) orders the records, ascending, as `sort[0][field]` does.
  /// `restartFilter`, when given, is the filter a listing starts over with after its cursor expired
  /// (e.g. from a caller's checkpoint, so that what was already handled is not read again).
  package func list(
    filterByFormula: String? = nil, sortField: String? = nil, pageSize: Int = maxPageSize,
    restartFilter: (() -> String?)? = nil, page handle: ([RemoteRecord]) async throws -> Void
  ) async throws {
    var filterByFormula = filterByFormula
    precondition((1...Self.maxPageSize).contains(pageSize), "pageSize must be 1...100")
    var offset: String?
    var restarts = 0
    while true {
      var query = [URLQueryItem(name: "pageSize", value: "\(pageSize)"), URLQueryItem(name: "returnFieldsByFieldId", value: "true")]
      if let filterByFormula { query.append(URLQueryItem(name: "filterByFormula", value: filterByFormula)) }
      if let sortField {
        query.append(URLQueryItem(name: "sort[0][field]", value: sortField))
        query.append(URLQueryItem(name: "sort[0][direction]", value: "asc"))
      }
      if let offset { query.append(URLQueryItem(name: "offset", value: offset)) }
      let answer: JSONValue
      do {
        answer = try await send(.GET, path: tablePath, query: query)
      } catch let error as AirtableError where error.type == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE" && offset != nil {
        restarts += 1
        stats.restarted()
        guard restarts <= configuration.maxIteratorRestarts else { throw error }
        offset = nil
        if let restartFilter { filterByFormula = restartFilter() }
        continue
      }
      guard case .array(let items) = answer.object?["records"] ?? .null else {
        throw AirtableError(status: 200, type: "UNEXPECTED_REPLY", message: "no \"records\" in the list reply", request: "GET \(tablePath)")
      }
      try await handle(items.compactMap(Self.record))
      offset = answer.object?["offset"]?.stringValue
      if offset == nil { return }
    }
  }

  // MARK: - Writes

  /// Creates or updates records matched on `mergeOn` (field names or ids), 10 per request.
  package func upsert(_ records: [[String: JSONValue]], mergeOn: [String]) async throws -> WriteOutcome {
    try await write(records.map { (id: nil, fields: $0) }, mergeOn: mergeOn)
  }

  /// Updates records by id, 10 per request.
  package func update(_ records: [(id: String, fields: [String: JSONValue])]) async throws -> WriteOutcome {
    try await write(records.map { (id: Optional($0.id), fields: $0.fields) }, mergeOn: nil)
  }

  private func write(_ records: [(id: String?, fields: [String: JSONValue])], mergeOn: [String]?) async throws -> WriteOutcome {
    var outcome = WriteOutcome()
    var start = 0
    while start < records.count {
      let end = min(records.count, start + Self.maxBatch)
      try await writeBatch(Array(records[start..<end]), firstPosition: start, mergeOn: mergeOn, into: &outcome)
      start = end
    }
    return outcome
  }

  /// One request; a 422 splits the batch in halves until the refused records stand alone.
  private func writeBatch(
    _ batch: [(id: String?, fields: [String: JSONValue])], firstPosition: Int, mergeOn: [String]?, into outcome: inout WriteOutcome
  ) async throws {
    var body: [String: JSONValue] = [
      "typecast": .bool(false), "returnFieldsByFieldId": .bool(true),
      "records": .array(
        batch.map { record in
          var item: [String: JSONValue] = ["fields": .object(record.fields)]
          if let id = record.id { item["id"] = .string(id) }
          return .object(item)
        }),
    ]
    if let mergeOn { body["performUpsert"] = .object(["fieldsToMergeOn": .array(mergeOn.map(JSONValue.string))]) }
    do {
      let answer = try await send(.PATCH, path: tablePath, body: .object(body))
      if mergeOn != nil {
        outcome.created += (answer.object?["createdRecords"]?.array ?? []).compactMap(\.stringValue)
        outcome.updated += (answer.object?["updatedRecords"]?.array ?? []).compactMap(\.stringValue)
      } else {
        outcome.updated += (answer.object?["records"]?.array ?? []).compactMap { $0.object?["id"]?.stringValue }
      }
    } catch let error as AirtableError where Self.recordErrorTypes.contains(error.type) {
      guard batch.count > 1 else {
        outcome.refused.append((firstPosition, "\(error.type): \(error.message)"))
        return
      }
      let half = batch.count / 2
      try await writeBatch(Array(batch[..<half]), firstPosition: firstPosition, mergeOn: mergeOn, into: &outcome)
      try await writeBatch(Array(batch[half...]), firstPosition: firstPosition + half, mergeOn: mergeOn, into: &outcome)
    }
  }

  // MARK: - HTTP

  private var tablePath: String { "/v0/\(escaped(configuration.base))/\(escaped(configuration.table))" }

  private func escaped(_ component: String) -> String {
    component.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? component
  }

  /// Sends one request at the base's pace; waits and retries on 429; throws AirtableError for
  /// any other answer that is not 2xx.
  private func send(_ method: HTTPMethod, path: String, query: [URLQueryItem] = [], body: JSONValue? = nil) async throws -> JSONValue {
    var components = URLComponents(string: configuration.endpoint + path)
    // Every reserved character escaped, `+` included (a server may read a bare `+` as a space).
    let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    if !query.isEmpty {
      components?.percentEncodedQueryItems = query.map {
        URLQueryItem(
          name: $0.name.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.name,
          value: $0.value?.addingPercentEncoding(withAllowedCharacters: allowed))
      }
    }
    let description = "\(method.rawValue) \(path)"
    guard let url = components?.url?.absoluteString else {
      throw AirtableError(status: nil, type: "BAD_ENDPOINT", message: "'\(configuration.endpoint)' is not a URL", request: description)
    }
    var rateLimitedInARow = 0
    var serverErrors = 0
    while true {
      var request = HTTPClientRequest(url: url)
      request.method = method
      request.headers.add(name: "Authorization", value: "Bearer \(configuration.token.value)")
      if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
      }
      try await pacer.acquire()
      stats.call()
      let status: Int
      let bytes: ByteBuffer
      do {
        defer { pacer.release() }
        let response = try await http.execute(request, timeout: TimeAmount(configuration.requestTimeout))
        status = Int(response.status.code)
        bytes = try await response.body.collect(upTo: 32 << 20)
      } catch let error as CancellationError {
        throw error
      } catch {
        // A cancelled task's request fails as HTTPClientError.cancelled: the caller stopped, the
        // table did not fail.
        if Task.isCancelled { throw CancellationError() }
        throw AirtableError(status: nil, type: "UNREACHABLE", message: "\(error)", request: description)
      }
      let text = String(buffer: bytes)
      let json = JSONValue.parse(text)
      if status == 429 {
        stats.limited()
        let (type, message) = Self.errorDetails(json, text: text)
        // A monthly quota is not waited out.
        guard type != "PUBLIC_API_BILLING_LIMIT_EXCEEDED" else {
          throw AirtableError(status: status, type: type, message: message, request: description)
        }
        rateLimitedInARow += 1
        guard rateLimitedInARow <= configuration.maxRateLimitRetries else {
          throw AirtableError(status: 429, type: type, message: "still rate limited after \(rateLimitedInARow) tries", request: description)
        }
        // The whole base waits: every request to it would be refused meanwhile.
        pacer.pause(for: configuration.rateLimitWait)
        continue
      }
      if [500, 502, 503, 504].contains(status) && serverErrors < configuration.serverErrorRetries {
        // Lists and writes by id or merge field can be repeated safely.
        serverErrors += 1
        try await Task.sleep(for: configuration.serverErrorWait * (1 << (serverErrors - 1)))
        continue
      }
      guard (200..<300).contains(status) else {
        let (type, message) = Self.errorDetails(json, text: text)
        throw AirtableError(status: status, type: type, message: message, request: description)
      }
      guard let json else {
        throw AirtableError(
          status: status, type: "UNEXPECTED_REPLY", message: "the reply is not JSON: \(text.prefix(200))", request: description)
      }
      return json
    }
  }

  /// Airtable writes errors as `{"error": {"type", "message"}}`, `{"error": "TYPE"}` or
  /// `{"errors": [{"error", "message"}]}`.
  static func errorDetails(_ json: JSONValue?, text: String) -> (type: String, message: String) {
    if let error = json?.object?["error"] {
      if let type = error.stringValue { return (type, type) }
      return (error.object?["type"]?.stringValue ?? "UNKNOWN", error.object?["message"]?.stringValue ?? "")
    }
    if let first = json?.object?["errors"]?.array?.first?.object {
      return (first["error"]?.stringValue ?? "UNKNOWN", first["message"]?.stringValue ?? "")
    }
    return ("UNKNOWN", String(text.prefix(200)))
  }

  static func record(_ value: JSONValue) -> RemoteRecord? {
    guard let object = value.object, let id = object["id"]?.stringValue else { return nil }
    return RemoteRecord(id: id, createdTime: object["createdTime"]?.stringValue ?? "", fields: object["fields"]?.object ?? [:])
  }
}
