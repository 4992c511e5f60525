import Foundation
import HTTPTypes
import HeraldCore
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A local server with the shape and limits of Airtable's REST API, for Herald's tests and the
/// local stack (the real SaaS is not reachable there; Herald's connector is the real one).
///
/// Implemented: `GET /v0/meta/bases/{base}/tables` (schema with field ids and types);
/// `GET /v0/{base}/{table}` (pageSize ≤ 100, `offset` iterators that expire, `filterByFormula`
/// of the form `IS_AFTER({Field}, 'ISO date')` or `IS_AFTER(LAST_MODIFIED_TIME(), '…')`,
/// `returnFieldsByFieldId`); `POST` (create), `PATCH` (update by id, or upsert with
/// `performUpsert.fieldsToMergeOn`) of at most 10 records, all-or-nothing, `typecast` off;
/// `DELETE ?records[]=`. Limits: a bearer token; 5 requests a second per base, then 429; 422 for
/// unknown fields, values of the wrong type, writes to computed fields, more than 10 records.
/// Tables may lack a last-modified field. Tables are addressed by id or name.
package final class CRMSandbox: Sendable {
  package enum FieldType: String, Sendable, CaseIterable {
    case singleLineText, email, phoneNumber, number, checkbox, dateTime, lastModifiedTime
  }

  package struct Field: Sendable, Equatable {
    package var id: String
    package var name: String
    package var type: FieldType
  }

  package struct Record: Sendable, Equatable {
    package var id: String
    package var createdTime: Date
    package var modifiedTime: Date
    /// By field id; empty values are absent, as Airtable leaves them out.
    package var fields: [String: JSONValue]
  }

  struct Table: Sendable {
    var id: String
    var name: String
    var fields: [Field]
    var records: [String: Record] = [:]
    var order: [String] = []

    func field(_ key: String) -> Field? { fields.first { $0.id == key || $0.name == key } }
  }

  struct Iterator: Sendable {
    var base: String
    var table: String
    var ids: [String]
    var position: Int
    var created: Date
  }

  struct State: Sendable {
    var bases: [String: [Table]] = [:]
    var iterators: [String: Iterator] = [:]
    var recentRequests: [String: [Date]] = [:]
    /// A base over its limit refuses everything until then (Airtable: 30 seconds).
    var lockedUntil: [String: Date] = [:]
    var requests = 0
    var rateLimited = 0
    var failNext: [(status: Int, body: String)] = []
  }

  package let token: String
  package let requestsPerSecond: Int
  package let iteratorLifetime: Duration
  /// How long a base that went over its limit answers 429 to everything (Airtable: 30 s).
  package let rateLimitPenalty: Duration
  let state = Mutex(State())

  package init(
    token: String, requestsPerSecond: Int = 5, iteratorLifetime: Duration = .seconds(60), rateLimitPenalty: Duration = .seconds(30)
  ) {
    self.token = token
    self.requestsPerSecond = requestsPerSecond
    self.iteratorLifetime = iteratorLifetime
    self.rateLimitPenalty = rateLimitPenalty
  }

  // MARK: - Controls (what another user of the table, or a test, does)

  /// Adds a table; returns its id. Field ids are made from the names (`fld` + 14 characters).
  @discardableResult
  package func addTable(base: String, name: String, fields: [(name: String, type: FieldType)]) -> String {
    let table = Table(
      id: Self.makeID("tbl"), name: name,
      fields: fields.map { Field(id: Self.makeID("fld"), name: $0.name, type: $0.type) })
    state.withLock { $0.bases[base, default: []].append(table) }
    return table.id
  }

  package func fields(base: String, table: String) -> [Field] {
    state.withLock { state in Self.tableIndex(state, base, table).map { state.bases[base]![$0].fields } ?? [] }
  }

  /// Creates records as another user would (values by field name); returns their ids.
  @discardableResult
  package func insert(base: String, table: String, _ records: [[String: JSONValue]], at time: Date = Date()) -> [String] {
    state.withLock { state in
      guard let index = Self.tableIndex(state, base, table) else { return [] }
      return records.map { values in
        let id = Self.makeID("rec")
        var record = Record(id: id, createdTime: time, modifiedTime: time, fields: [:])
        for (key, value) in values {
          if let field = state.bases[base]![index].field(key) { record.fields[field.id] = value }
        }
        state.bases[base]![index].records[id] = record
        state.bases[base]![index].order.append(id)
        return id
      }
    }
  }

  /// Changes a record as another user would; its last-modified time becomes `time`.
  package func modify(base: String, table: String, id: String, _ values: [String: JSONValue], at time: Date = Date()) {
    state.withLock { state in
      guard let index = Self.tableIndex(state, base, table), var record = state.bases[base]![index].records[id] else { return }
      for (key, value) in values {
        guard let field = state.bases[base]![index].field(key) else { continue }
        record.fields[field.id] = Self.isEmpty(value) ? nil : value
      }
      record.modifiedTime = time
      state.bases[base]![index].records[id] = record
    }
  }

  package func delete(base: String, table: String, ids: [String]) {
    state.withLock { state in
      guard let index = Self.tableIndex(state, base, table) else { return }
      for id in ids { state.bases[base]![index].records[id] = nil }
      state.bases[base]![index].order.removeAll { ids.contains($0) }
    }
  }

  /// Every record, in creation order, values by field name.
  package func records(base: String, table: String) -> [(id: String, fields: [String: JSONValue], modified: Date)] {
    state.withLock { state in
      guard let index = Self.tableIndex(state, base, table) else { return [] }
      let table = state.bases[base]![index]
      return table.order.compactMap { table.records[$0] }.map { record in
        (
          record.id,
          Dictionary(
            uniqueKeysWithValues: record.fields.compactMap { id, value in
              table.fields.first { $0.id == id }.map { ($0.name, value) }
            }), record.modifiedTime
        )
      }
    }
  }

  /// Ends every open list iterator: the next page asked for with one gets 422
  /// LIST_RECORDS_ITERATOR_NOT_AVAILABLE.
  package func expireIterators() { state.withLock { $0.iterators.removeAll() } }

  /// The next requests (after authentication and the rate limit) get these answers instead.
  package func failNext(status: Int, body: String, times: Int = 1) {
    state.withLock { $0.failNext += Array(repeating: (status, body), count: times) }
  }

  /// Requests answered so far (all statuses), and those refused with 429.
  package var requestCount: Int { state.withLock { $0.requests } }
  package var rateLimitedCount: Int { state.withLock { $0.rateLimited } }

  // MARK: - HTTP

  package func addRoutes(to router: Router<BasicRequestContext>) {
    router.get("/v0/meta/bases/:base/tables") { request, context in
      try await self.answer(request, base: context.parameters.require("base")) { state in
        guard let tables = state.bases[try context.parameters.require("base")] else {
          return .error(404, "NOT_FOUND", "Could not find base")
        }
        return .json(200, .object(["tables": .array(tables.map(Self.schema))]))
      }
    }
    router.get("/v0/:base/:table") { request, context in
      let base = try context.parameters.require("base")
      let table = try context.parameters.require("table")
      return try await self.answer(request, base: base) { state in
        try self.list(&state, base: base, table: table, query: request.uri.queryParameters)
      }
    }
    for method in [HTTPRequest.Method.post, .patch] {
      router.on("/v0/:base/:table", method: method) { request, context in
        let base = try context.parameters.require("base")
        let table = try context.parameters.require("table")
        let body = try await request.body.collect(upTo: 1 << 20)
        let json = try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))
        return try await self.answer(request, base: base) { state in
          self.write(&state, base: base, table: table, body: json, upsertOrUpdate: method == .patch)
        }
      }
    }
    router.delete("/v0/:base/:table") { request, context in
      let base = try context.parameters.require("base")
      let table = try context.parameters.require("table")
      return try await self.answer(request, base: base) { state in
        guard let index = Self.tableIndex(state, base, table) else {
          return .error(404, "TABLE_NOT_FOUND", "Could not find table \(table)")
        }
        let ids: [String] = request.uri.queryParameters.getAll("records[]")
        guard (1...10).contains(ids.count) else { return .error(422, "INVALID_RECORDS", "Delete 1 to 10 records, got \(ids.count)") }
        for id in ids where state.bases[base]![index].records[id] == nil {
          return .error(404, "MODEL_ID_NOT_FOUND", "Record \(id) does not exist")
        }
        for id in ids { state.bases[base]![index].records[id] = nil }
        state.bases[base]![index].order.removeAll { ids.contains($0) }
        return .json(200, .object(["records": .array(ids.map { .object(["id": .string($0), "deleted": .bool(true)]) })]))
      }
    }
  }

  enum Answer {
    case json(Int, JSONValue)
    case raw(Int, String)

    static func error(_ status: Int, _ type: String, _ message: String) -> Answer {
      .json(status, .object(["error": .object(["type": .string(type), "message": .string(message)])]))
    }
  }

  private func answer(_ request: Request, base: String, _ handle: (inout State) throws -> Answer) async throws -> Response {
    let authorization = request.headers[.authorization] ?? ""
    let answer: Answer = try state.withLock { state in
      state.requests += 1
      guard authorization == "Bearer \(token)" else {
        return .error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
      }
      let now = Date()
      var recent = (state.recentRequests[base] ?? []).filter { now.timeIntervalSince($0) < 1 }
      let locked = state.lockedUntil[base].map { now < $0 } ?? false
      guard recent.count < requestsPerSecond, !locked else {
        state.rateLimited += 1
        state.recentRequests[base] = recent
        if !locked { state.lockedUntil[base] = now.addingTimeInterval(Self.seconds(rateLimitPenalty)) }
        return .raw(429, #"{"errors":[{"error":"RATE_LIMIT_REACHED","message":"Rate limit exceeded. Please try again later"}]}"#)
      }
      recent.append(now)
      state.recentRequests[base] = recent
      if !state.failNext.isEmpty {
        let failure = state.failNext.removeFirst()
        return .raw(failure.status, failure.body)
      }
      return try handle(&state)
    }
    let (status, text): (Int, String)
    switch answer {
    case .json(let code, let value):
      (status, text) = (code, String(decoding: try JSONEncoder().encode(value), as: UTF8.self))
    case .raw(let code, let body):
      (status, text) = (code, body)
    }
    var headers = HTTPFields()
    headers[.contentType] = "application/json; charset=utf-8"
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
  }

  // MARK: - List

  private func list(_ state: inout State, base: String, table name: String, query: Parameters) throws -> Answer {
    guard let index = Self.tableIndex(state, base, name) else { return .error(404, "TABLE_NOT_FOUND", "Could not find table \(name)") }
    let table = state.bases[base]![index]
    let pageSize = query.get("pageSize").map { Int($0) } ?? 100
    guard let pageSize, (1...100).contains(pageSize) else {
      return .error(422, "INVALID_REQUEST_UNKNOWN", "pageSize must be an integer from 1 to 100")
    }
    let byID = query.get("returnFieldsByFieldId") == "true"
    var iterator: Iterator
    if let offset = query.get("offset") {
      let key = String(offset.prefix { $0 != "/" })
      guard let found = state.iterators[key], found.base == base, found.table == table.id,
        Date().timeIntervalSince(found.created) < Self.seconds(iteratorLifetime)
      else {
        state.iterators[key] = nil
        return .error(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "The iterator is not available (expired or unknown)")
      }
      iterator = found
      // Airtable's offsets time out after inactivity: each page given out starts the clock again.
      iterator.created = Date()
      state.iterators[key] = nil
    } else {
      var ids = table.order
      if let formula = query.get("filterByFormula") {
        guard let filter = Self.parseFilter(formula, table: table) else {
          return .error(422, "INVALID_FILTER_BY_FORMULA", "The formula for filtering records is invalid: \(formula)")
        }
        ids = ids.filter { table.records[$0].map(filter) ?? false }
      }
      // Query names arrive percent-encoded (`sort%5B0%5D%5Bfield%5D`), as clients send them.
      func parameter(_ name: String) -> String? {
        query.first { String($0.key).removingPercentEncoding == name }.map { String($0.value) }
      }
      if let sortKey = parameter("sort[0][field]") {
        guard let field = table.field(sortKey) else {
          return .error(422, "UNKNOWN_FIELD_NAME", "Unknown field name: \"\(sortKey)\"")
        }
        let descending = parameter("sort[0][direction]") == "desc"
        func key(_ record: Record?) -> String {
          guard let record else { return "" }
          if field.type == .lastModifiedTime { return Self.formatDate(record.modifiedTime) }
          return record.fields[field.id].map { $0.stringValue ?? "\($0)" } ?? ""
        }
        // A stable sort: records with equal keys keep the table's order.
        ids = ids.enumerated().sorted { a, b in
          let (x, y) = (key(table.records[a.element]), key(table.records[b.element]))
          return x == y ? a.offset < b.offset : (descending ? x > y : x < y)
        }.map(\.element)
      }
      iterator = Iterator(base: base, table: table.id, ids: ids, position: 0, created: Date())
    }
    let page = iterator.ids[iterator.position..<min(iterator.ids.count, iterator.position + pageSize)]
    let records = page.compactMap { table.records[$0] }.map { Self.json($0, table: table, byID: byID) }
    var body: [String: JSONValue] = ["records": .array(records)]
    iterator.position += page.count
    if iterator.position < iterator.ids.count {
      let key = Self.makeID("itr")
      state.iterators[key] = iterator
      body["offset"] = .string("\(key)/\(iterator.ids[iterator.position])")
    }
    return .json(200, .object(body))
  }

  /// `IS_AFTER({Field}, 'ISO')` or `IS_AFTER(LAST_MODIFIED_TIME(), 'ISO')`.
  static func parseFilter(_ formula: String, table: Table) -> ((Record) -> Bool)? {
    let pattern = /^IS_AFTER\((?:\{([^}]+)\}|LAST_MODIFIED_TIME\(\)),\s*'([^']+)'\)$/
    guard let match = formula.wholeMatch(of: pattern), let after = parseDate(String(match.2)) else { return nil }
    guard let name = match.1 else { return { $0.modifiedTime > after } }
    guard let field = table.field(String(name)) else { return nil }
    if field.type == .lastModifiedTime { return { $0.modifiedTime > after } }
    guard field.type == .dateTime else { return nil }
    return { record in record.fields[field.id]?.stringValue.flatMap(parseDate).map { $0 > after } ?? false }
  }

  // MARK: - Writes

  private func write(_ state: inout State, base: String, table name: String, body: JSONValue?, upsertOrUpdate: Bool) -> Answer {
    guard let index = Self.tableIndex(state, base, name) else { return .error(404, "TABLE_NOT_FOUND", "Could not find table \(name)") }
    guard case .object(let request) = body, case .array(let items) = request["records"] ?? .null else {
      return .error(422, "INVALID_REQUEST_MISSING_FIELDS", "Could not find field \"records\" in the request body")
    }
    guard (1...10).contains(items.count) else {
      return .error(422, "INVALID_RECORDS", "You must provide an array of up to 10 record objects, got \(items.count)")
    }
    if case .bool(true) = request["typecast"] ?? .null {
      return .error(422, "INVALID_REQUEST_UNKNOWN", "typecast is not supported by this server")
    }
    let byID = request["returnFieldsByFieldId"] == .bool(true)
    var table = state.bases[base]![index]
    var mergeOn: [Field]?
    if upsertOrUpdate, case .object(let upsert) = request["performUpsert"] ?? .null {
      guard case .array(let names) = upsert["fieldsToMergeOn"] ?? .null, (1...3).contains(names.count) else {
        return .error(422, "INVALID_REQUEST_UNKNOWN", "performUpsert.fieldsToMergeOn must list 1 to 3 fields")
      }
      var fields: [Field] = []
      for name in names {
        guard let key = name.stringValue, let field = table.field(key), field.type != .lastModifiedTime else {
          return .error(422, "INVALID_MERGE_FIELD", "Field \(name) cannot be used to merge on")
        }
        fields.append(field)
      }
      mergeOn = fields
    }

    // All or nothing: every record is checked and applied to a copy of the table first.
    let now = Date()
    var created: [String] = []
    var updated: [String] = []
    var written: [Record] = []
    for (position, item) in items.enumerated() {
      guard case .object(let record) = item, case .object(let values) = record["fields"] ?? .object([:]) else {
        return .error(422, "INVALID_RECORDS", "records[\(position)] must be an object with \"fields\"")
      }
      var changes: [String: JSONValue] = [:]
      for (key, value) in values {
        guard let field = table.field(key) else { return .error(422, "UNKNOWN_FIELD_NAME", "Unknown field name: \"\(key)\"") }
        if let problem = Self.check(value, for: field) {
          return .error(422, "INVALID_VALUE_FOR_COLUMN", "Field \"\(field.name)\" cannot accept the provided value: \(problem)")
        }
        changes[field.id] = value
      }
      var target: String?
      if let mergeOn {
        guard mergeOn.allSatisfy({ changes[$0.id] != nil && changes[$0.id] != .null }) else {
          return .error(422, "INVALID_RECORDS", "records[\(position)] has no value for a field to merge on")
        }
        let matches = table.order.filter { id in mergeOn.allSatisfy { table.records[id]?.fields[$0.id] == changes[$0.id] } }
        guard matches.count <= 1 else {
          return .error(422, "INVALID_RECORDS", "records[\(position)] matches \(matches.count) records on the fields to merge on")
        }
        target = matches.first
      } else if upsertOrUpdate {
        guard let id = record["id"]?.stringValue else { return .error(422, "INVALID_RECORDS", "records[\(position)] has no id") }
        guard table.records[id] != nil else { return .error(404, "MODEL_ID_NOT_FOUND", "Record \(id) does not exist") }
        target = id
      }
      var result: Record
      if let target, var existing = table.records[target] {
        for (field, value) in changes { existing.fields[field] = Self.isEmpty(value) ? nil : value }
        existing.modifiedTime = now
        result = existing
        updated.append(target)
      } else {
        result = Record(id: Self.makeID("rec"), createdTime: now, modifiedTime: now, fields: changes.filter { !Self.isEmpty($0.value) })
        table.order.append(result.id)
        created.append(result.id)
      }
      table.records[result.id] = result
      written.append(result)
    }
    state.bases[base]![index] = table
    var answer: [String: JSONValue] = ["records": .array(written.map { Self.json($0, table: table, byID: byID) })]
    if mergeOn != nil {
      answer["createdRecords"] = .array(created.map(JSONValue.string))
      answer["updatedRecords"] = .array(updated.map(JSONValue.string))
    }
    return .json(200, .object(answer))
  }

  /// Why `value` does not fit `field`, or nil.
  static func check(_ value: JSONValue, for field: Field) -> String? {
    if field.type == .lastModifiedTime { return "the field is computed" }
    if isEmpty(value) { return nil }
    switch (field.type, value) {
    case (.singleLineText, .string(let text)), (.phoneNumber, .string(let text)):
      return text.contains("\n") && field.type == .singleLineText ? "a single line is expected" : nil
    case (.email, .string(let text)):
      return text.wholeMatch(of: /[^@\s]+@[^@\s]+\.[^@\s]+/) == nil ? "'\(text)' is not an email address" : nil
    case (.number, .number), (.checkbox, .bool): return nil
    case (.dateTime, .string(let text)):
      return parseDate(text) == nil ? "'\(text)' is not an ISO 8601 date and time" : nil
    default:
      return "a \(value.typeName) does not fit a \(field.type.rawValue) field"
    }
  }

  /// Airtable leaves out empty values: null, "", [] and an unchecked checkbox.
  static func isEmpty(_ value: JSONValue) -> Bool {
    value == .null || value == .string("") || value == .array([]) || value == .bool(false)
  }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }

  // MARK: - Shapes

  static func json(_ record: Record, table: Table, byID: Bool) -> JSONValue {
    var fields: [String: JSONValue] = [:]
    for field in table.fields {
      let value = field.type == .lastModifiedTime ? .string(formatDate(record.modifiedTime)) : record.fields[field.id]
      if let value { fields[byID ? field.id : field.name] = value }
    }
    return .object(["id": .string(record.id), "createdTime": .string(formatDate(record.createdTime)), "fields": .object(fields)])
  }

  static func schema(_ table: Table) -> JSONValue {
    .object([
      "id": .string(table.id), "name": .string(table.name), "primaryFieldId": .string(table.fields.first?.id ?? ""),
      "fields": .array(table.fields.map { .object(["id": .string($0.id), "name": .string($0.name), "type": .string($0.type.rawValue)]) }),
    ])
  }

  static func tableIndex(_ state: State, _ base: String, _ table: String) -> Int? {
    state.bases[base]?.firstIndex { $0.id == table || $0.name == table }
  }

  static func makeID(_ prefix: String) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return prefix + String((0..<14).map { _ in alphabet.randomElement()! })
  }

  static func formatDate(_ date: Date) -> String { ISOTime.format(date) }

  static func parseDate(_ text: String) -> Date? { ISOTime.parse(text) }
}

/// Runs a sandbox on `host:port` (0 = any free port) for the duration of `body`.
@discardableResult
package func withCRMSandbox<T: Sendable>(
  _ sandbox: CRMSandbox, host: String = "127.0.0.1", port: Int = 0, _ body: (_ port: Int) async throws -> T
) async throws -> T {
  let router = Router()
  sandbox.addRoutes(to: router)
  return try await withListeningServer(router, host: host, port: port, label: "crm-sandbox", body)
}
