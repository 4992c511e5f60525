import CRMSandbox
import Foundation
import HeraldCore
import HeraldSync
import Testing

/// The real connector against the local Airtable-style server (CRMSandbox) over HTTP.
@Suite(.timeLimit(.minutes(3))) struct AirtableConnectorTests {
  static let token = "patTEST.0123456789abcdef"
  static let fields: [(name: String, type: CRMSandbox.FieldType)] = [
    ("Email", .email), ("First Name", .singleLineText), ("Score", .number), ("Last Modified", .lastModifiedTime),
  ]

  /// A sandbox with one table and a connector to it; every test has its own base (and so its own pace).
  func withTable<T: Sendable>(
    requestsPerSecond: Int = 5, iteratorLifetime: Duration = .seconds(60), rateLimitPenalty: Duration = .seconds(30),
    configure: (inout AirtableClient.Configuration) -> Void = { _ in },
    _ body: (CRMSandbox, String, AirtableClient) async throws -> T
  ) async throws -> T {
    let sandbox = CRMSandbox(
      token: Self.token, requestsPerSecond: requestsPerSecond, iteratorLifetime: iteratorLifetime, rateLimitPenalty: rateLimitPenalty)
    let base = "app" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(14)
    sandbox.addTable(base: base, name: "Contacts", fields: Self.fields)
    return try await withCRMSandbox(sandbox) { port in
      var configuration = AirtableClient.Configuration(
        endpoint: "http://127.0.0.1:\(port)", base: base, table: "Contacts", token: Self.token)
      configure(&configuration)
      return try await body(sandbox, base, AirtableClient(configuration: configuration))
    }
  }

  static func people(_ range: Range<Int>) -> [[String: JSONValue]] {
    range.map { ["Email": .string("person\($0)@example.com"), "First Name": .string("Person \($0)"), "Score": .number(Double($0))] }
  }

  @Test func schemaNamesTheFieldsAndAnUnknownTable() async throws {
    try await withTable { sandbox, base, client async throws in
      let fields = try await client.fields()
      #expect(fields.map(\.name) == Self.fields.map(\.name))
      #expect(fields.map(\.type) == ["email", "singleLineText", "number", "lastModifiedTime"])
      #expect(fields.allSatisfy { $0.id.hasPrefix("fld") })

      var other = client.configuration
      other.table = "Leads"
      let error = await #expect(throws: AirtableError.self) { try await AirtableClient(configuration: other).fields() }
      #expect(error?.description.contains("has no table 'Leads'") == true)
    }
  }

  @Test func listsEveryPageAndStartsOverWhenTheCursorExpires() async throws {
    try await withTable { sandbox, base, client async throws in
      sandbox.insert(base: base, table: "Contacts", Self.people(0..<250))
      var pages: [Int] = []
      var ids = Set<String>()
      try await client.list { page async throws in
        pages.append(page.count)
        ids.formUnion(page.map(\.id))
      }
      #expect(pages == [100, 100, 50])
      #expect(ids.count == 250)

      // The cursor expires after the first page: the listing starts over and still sees everything.
      var seen = Set<String>()
      var calls = 0
      try await client.list(pageSize: 100) { page async throws in
        calls += 1
        if calls == 1 { sandbox.expireIterators() }
        seen.formUnion(page.map(\.id))
      }
      #expect(seen.count == 250)
      #expect(calls == 4, "the first page twice, then the rest")
      #expect(client.stats.iteratorRestarts == 1)
    }
  }

  @Test func filtersByTheLastModifiedField() async throws {
    try await withTable { sandbox, base, client async throws in
      let old = Date(timeIntervalSinceNow: -3600)
      let ids = sandbox.insert(base: base, table: "Contacts", Self.people(0..<20), at: old)
      sandbox.modify(base: base, table: "Contacts", id: ids[3], ["Score": .number(99)])
      sandbox.modify(base: base, table: "Contacts", id: ids[7], ["First Name": .string("Changed")])
      // With an explicit offset: its `+` must reach the server as a `+`, not a space.
      let since = Date(timeIntervalSinceNow: -60).formatted(.iso8601).replacingOccurrences(of: "Z", with: "+00:00")
      var changed: [String] = []
      try await client.list(filterByFormula: "IS_AFTER({Last Modified}, '\(since)')") { page async throws in
        changed += page.map(\.id)
      }
      #expect(Set(changed) == [ids[3], ids[7]])

      let bad = await #expect(throws: AirtableError.self) {
        try await client.list(filterByFormula: "IS_AFTER({Nope}, '\(since)')") { _ async throws in }
      }
      #expect(bad?.status == 422 && bad?.type == "INVALID_FILTER_BY_FORMULA")
    }
  }

  @Test func upsertsInBatchesOfTenOnTheMergeField() async throws {
    try await withTable { sandbox, base, client async throws in
      let first = try await client.upsert(Self.people(0..<25), mergeOn: ["Email"])
      #expect(first.created.count == 25 && first.updated.isEmpty && first.refused.isEmpty)
      #expect(client.stats.calls == 3)
      var changed = Self.people(20..<30)
      changed[0]["First Name"] = .string("Twenty")
      let second = try await client.upsert(changed, mergeOn: ["Email"])
      #expect(second.updated.count == 5 && second.created.count == 5)
      let records = sandbox.records(base: base, table: "Contacts")
      #expect(records.count == 30)
      #expect(records.first { $0.fields["Email"] == .string("person20@example.com") }?.fields["First Name"] == .string("Twenty"))
    }
  }

  @Test func aRefusedRecordIsFoundByHalvingItsBatchAndTheRestIsWritten() async throws {
    try await withTable { sandbox, base, client async throws in
      var batch = Self.people(0..<12)
      batch[7]["Email"] = .string("not-an-address")
      batch[10]["Shoe Size"] = .number(44)
      let outcome = try await client.upsert(batch, mergeOn: ["Email"])
      #expect(outcome.refused.map(\.position) == [7, 10])
      #expect(outcome.refused[0].reason.contains("INVALID_VALUE_FOR_COLUMN") && outcome.refused[0].reason.contains("not-an-address"))
      #expect(outcome.refused[1].reason.contains("UNKNOWN_FIELD_NAME") && outcome.refused[1].reason.contains("Shoe Size"))
      #expect(outcome.created.count == 10)
      #expect(sandbox.records(base: base, table: "Contacts").count == 10)
    }
  }

  @Test func anErrorAboutTheWholeRequestIsNotBisected() async throws {
    try await withTable { sandbox, base, client async throws in
      let error = await #expect(throws: AirtableError.self) { try await client.upsert(Self.people(0..<10), mergeOn: ["Nope"]) }
      #expect(error?.type == "INVALID_MERGE_FIELD" && client.stats.calls == 1)
      #expect(sandbox.records(base: base, table: "Contacts").isEmpty)
    }
  }

  @Test func waitsOutRateLimitsWithoutLosingRecords() async throws {
    // The client paces itself at 40 requests a second against a table that allows 1 and then locks
    // the base for 300 ms after each excess: a 429 storm, however slow a loaded machine makes each
    // request (a second request within the second is enough).
    try await withTable(
      requestsPerSecond: 1, rateLimitPenalty: .milliseconds(300),
      configure: {
        $0.requestsPerSecond = 40
        $0.rateLimitWait = .milliseconds(300)
      }
    ) {
      sandbox, base, client async throws in
      let outcome = try await client.upsert(Self.people(0..<60), mergeOn: ["Email"])
      #expect(outcome.created.count == 60 && outcome.refused.isEmpty)
      #expect(sandbox.records(base: base, table: "Contacts").count == 60)
      #expect(client.stats.rateLimited > 0)
      #expect(client.stats.rateLimited == sandbox.rateLimitedCount)
    }
    // At its own pace (5 a second per base) the same work sees no 429 at all.
    try await withTable { sandbox, base, client async throws in
      _ = try await client.upsert(Self.people(0..<60), mergeOn: ["Email"])
      #expect(sandbox.rateLimitedCount == 0 && client.stats.calls == 6)
    }
  }

  @Test func aSandboxThatCannotListenSaysSoInsteadOfWaiting() async throws {
    try await withCRMSandbox(CRMSandbox(token: Self.token)) { port async throws in
      await #expect(throws: (any Error).self) {
        try await withCRMSandbox(CRMSandbox(token: Self.token), port: port) { _ async throws in }
      }
    }
  }

  @Test func errorsNameTheRequestAndNeverTheToken() async throws {
    try await withTable(configure: { $0.token = Secret("wrong-token-value") }) { sandbox, base, client async throws in
      let error = await #expect(throws: AirtableError.self) { try await client.fields() }
      #expect(error?.status == 401 && error?.type == "AUTHENTICATION_REQUIRED")
      #expect(error?.description.contains("GET /v0/meta/bases/\(base)/tables") == true)
      #expect(error?.description.contains("wrong-token-value") == false)
    }
    try await withTable(configure: { $0.serverErrorWait = .milliseconds(10) }) { sandbox, base, client async throws in
      // A passing 503 is retried; one that lasts past three retries is the error.
      sandbox.failNext(status: 503, body: "<html>upstream down</html>", times: 2)
      _ = try await client.fields()
      #expect(client.stats.calls == 3)
      sandbox.failNext(status: 503, body: "<html>upstream down</html>", times: 4)
      let error = await #expect(throws: AirtableError.self) { try await client.fields() }
      #expect(error?.status == 503 && error?.message.contains("upstream down") == true)
      #expect(client.stats.calls == 7)
    }
    // (async-http-client keeps trying to connect until the request's deadline.)
    var nowhere = AirtableClient.Configuration(endpoint: "http://127.0.0.1:1", base: "appNowhere", table: "Contacts", token: Self.token)
    nowhere.requestTimeout = .seconds(1)
    let error = await #expect(throws: AirtableError.self) { try await AirtableClient(configuration: nowhere).fields() }
    #expect(error?.type == "UNREACHABLE" && error?.description.contains("GET /v0/meta/bases/appNowhere/tables failed") == true)
  }
}
