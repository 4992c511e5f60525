import Foundation
import HTTPTypes
import HeraldDelivery
import HummingbirdTesting
import NIOCore
import Testing

/// Bad input at the REST edge: each answer is a 400 (or 401, 415) naming the problem in plain
/// words, and nothing of the request is stored.
extension GatewayTests {
  func subscriberCount(_ client: any TestClientProtocol) async throws -> Int {
    try await client.execute(uri: "/v1/subscribers?page_size=500", method: .get, headers: Self.headers(Self.adminKey)) {
      response async throws in (try Self.json(response.body)["subscribers"] as? [[String: Any]])?.count ?? 0
    }
  }

  func send(_ client: any TestClientProtocol, _ uri: String, _ body: [UInt8], contentType: String? = "application/json")
    async throws -> (HTTPResponse.Status, [String: Any])
  {
    var headers = Self.headers(Self.adminKey)
    if let contentType { headers[.contentType] = contentType }
    return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(bytes: body)) { response async throws in
      #expect(response.headers[.contentType] == "application/problem+json" || response.status.code < 300)
      return (response.status, try Self.json(response.body))
    }
  }

  /// The length limits above what the REST contract check can generate (scripts/schemathesis_hooks.py
  /// leaves them out): a template body of printable ASCII up to 262,144 characters, other text up
  /// to 65,536; attributes up to 32,768 bytes (8,192 characters when not ASCII). One over is a 400
  /// naming the field.
  @Test func longTextIsTakenUpToItsLimitAndRefusedOneOver() async throws {
    try await withGateway { client async throws in
      func template(_ body: String) -> [UInt8] {
        Array(#"{"name": "long-\#(body.count)-\#(body.utf8.count)", "channel": "email", "subject": "Hi", "body": "\#(body)"}"#.utf8)
      }
      let (ascii, _) = try await send(client, "/v1/templates", template(String(repeating: "a", count: 262_144)))
      #expect(ascii == .created)
      let (asciiOver, asciiProblem) = try await send(client, "/v1/templates", template(String(repeating: "a", count: 262_145)))
      #expect(asciiOver == .badRequest && asciiProblem["field"] as? String == "body", "\(asciiProblem)")
      let (accented, _) = try await send(client, "/v1/templates", template(String(repeating: "é", count: 65_536)))
      #expect(accented == .created)
      let (accentedOver, accentedProblem) = try await send(client, "/v1/templates", template(String(repeating: "é", count: 65_537)))
      #expect(accentedOver == .badRequest && accentedProblem["field"] as? String == "body", "\(accentedProblem)")
      func subscriber(_ email: String, attribute: String) -> [UInt8] {
        let attributes = #"{\"note\": \"\#(attribute)\"}"#
        return Array(#"{"email": "\#(email)", "attributes_json": "\#(attributes)"}"#.utf8)
      }
      let (longAttributes, longProblem) = try await send(
        client, "/v1/subscribers", subscriber("long@example.com", attribute: String(repeating: "a", count: 32_768)))
      #expect(longAttributes == .badRequest && longProblem["field"] as? String == "attributes_json", "\(longProblem)")
      let (fitting, _) = try await send(
        client, "/v1/subscribers", subscriber("fits@example.com", attribute: String(repeating: "a", count: 32_000)))
      #expect(fitting == .created)
    }
  }

  @Test func textHoldingNULOrNotUTF8IsRefusedNamingTheFieldAndNothingIsStored() async throws {
    try await withGateway { client async throws in
      // The JSON escape \u0000, as the issue saw it answered 500.
      let (escaped, escapedProblem) = try await send(client, "/v1/subscribers", Array(#"{"email": "a\u0000@b.com"}"#.utf8))
      #expect(escaped == .badRequest && escapedProblem["field"] as? String == "email")
      #expect((escapedProblem["detail"] as? String)?.contains("NUL") == true)
      // A raw NUL byte inside the string, and a NUL in a nested field.
      let (raw, rawProblem) = try await send(
        client, "/v1/subscribers", Array(#"{"first_name": "A"#.utf8) + [0] + Array(#"", "email": "a@b.com"}"#.utf8))
      #expect(raw == .badRequest && rawProblem["field"] as? String == "first_name")
      let (nested, nestedProblem) = try await send(
        client, "/v1/subscribers", Array(#"{"email": "a@b.com", "email_consent": {"subscribed": true, "source": "x\u0000"}}"#.utf8))
      #expect(nested == .badRequest && nestedProblem["field"] as? String == "email_consent.source")
      // Bytes that are not UTF-8 (Latin-1 é), and a lone surrogate escape.
      let (latin1, latin1Problem) = try await send(
        client, "/v1/subscribers", Array(#"{"email": "a@b.com", "first_name": "Ren"#.utf8) + [0xE9] + Array(#""}"#.utf8))
      #expect(latin1 == .badRequest && latin1Problem["field"] as? String == "first_name")
      #expect((latin1Problem["detail"] as? String)?.contains("UTF-8") == true)
      let (surrogate, surrogateProblem) = try await send(
        client, "/v1/subscribers", Array(#"{"email": "a@b.com", "last_name": "\ud800"}"#.utf8))
      #expect(surrogate == .badRequest && surrogateProblem["field"] as? String == "last_name")
      // A NUL in a path or query parameter.
      try await client.execute(uri: "/v1/subscribers?page_token=a%00b", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "page_token")
      }
      // The import: a row holding NUL, and one that is not UTF-8, are row errors; the others are kept.
      var headers = Self.headers(Self.adminKey)
      headers[.contentType] = "text/csv"
      let csv =
        Array("email,first_name\nok1@example.com,One\nbad@example.com,N".utf8) + [0] + Array("ul\nlatin@example.com,Ren".utf8) + [0xE9]
        + Array("\nok2@example.com,Two\n".utf8)
      try await client.execute(uri: "/v1/subscribers/import", method: .post, headers: headers, body: ByteBuffer(bytes: csv)) {
        response async throws in
        #expect(response.status == .ok)
        let result = try Self.json(response.body)
        #expect(result["created"] as? String == "2" && result["failed"] as? String == "2", "\(result)")
        let errors = try #require(result["errors"] as? [[String: Any]])
        #expect(errors.map { $0["field"] as? String } == ["first_name", "first_name"])
        #expect(errors.map { $0["row"] as? String } == ["3", "4"])
      }
      #expect(try await subscriberCount(client) == 2)
    }
  }

  @Test func errorTextsNameTheFieldInPlainWordsAndTheMediaTypeIsChecked() async throws {
    try await withGateway(rateLimit: true) { client async throws in
      // Malformed JSON: where, not Foundation's internals.
      let (malformed, malformedProblem) = try await send(client, "/v1/subscribers", Array(#"{"email": "a@b.com",, }"#.utf8))
      #expect(malformed == .badRequest)
      let detail = try #require(malformedProblem["detail"] as? String)
      #expect(detail.hasPrefix("the request body is not valid JSON: ") && detail.contains("line 1, column 21"), "\(detail)")
      #expect(!detail.contains("NSCocoaErrorDomain") && !detail.contains("Code="))
      // A body that is not JSON at all.
      let (plain, plainProblem) = try await send(client, "/v1/subscribers", Array("email=a@b.com".utf8), contentType: "text/plain")
      #expect(plain == .unsupportedMediaType && plainProblem["field"] as? String == "Content-Type")
      let (untyped, _) = try await send(client, "/v1/subscribers", Array(#"{"email": "a@b.com"}"#.utf8), contentType: nil)
      #expect(untyped == .unsupportedMediaType)
      // An enum value that does not exist: the field and the values it takes.
      let (unit, unitProblem) = try await send(
        client, "/v1/rate-limits",
        Array(#"{"descriptors": [{"key": "domain", "value": "*"}], "requests_per_unit": 5, "unit": "UNIT_WEEK"}"#.utf8))
      #expect(unit == .badRequest && unitProblem["field"] as? String == "unit")
      let unitDetail = try #require(unitProblem["detail"] as? String)
      #expect(unitDetail.contains("UNIT_SECOND, UNIT_MINUTE, UNIT_HOUR, UNIT_DAY") && unitDetail.contains("UNIT_WEEK"), "\(unitDetail)")
      // A field of the wrong type, and an unknown one.
      let (typed, typedProblem) = try await send(client, "/v1/subscribers", Array(#"{"email": 42}"#.utf8))
      #expect(typed == .badRequest && typedProblem["field"] as? String == "email")
      #expect(typedProblem["detail"] as? String == "email must be a string, not a whole number")
      // A key given twice.
      let (twice, twiceProblem) = try await send(client, "/v1/subscribers", Array(#"{"email": "a@b.com", "email": "c@d.com"}"#.utf8))
      #expect(twice == .badRequest && twiceProblem["field"] as? String == "email")
      // A query parameter the route does not take.
      try await client.execute(uri: "/v1/subscribers?pagesize=5", method: .get, headers: Self.headers(Self.adminKey)) {
        response async throws in
        #expect(response.status == .badRequest)
        #expect(try Self.json(response.body)["field"] as? String == "pagesize")
      }
      // A method the path does not take: 405 naming the ones it does.
      try await client.execute(uri: "/v1/subscribers", method: .put, headers: Self.headers(Self.adminKey)) { response async throws in
        #expect(response.status == .methodNotAllowed)
        #expect(response.headers[.allow] == "GET, POST")
      }
    }
  }

  @Test func providerWebhooksWithoutAValidSignatureAre401WhateverTheName() async throws {
    try await withGateway(delivery: true) { client async throws in
      let body = Data(#"{"events":[]}"#.utf8)
      func post(_ provider: String, signature: String?) async throws -> (HTTPResponse.Status, [String: Any]) {
        var headers = Self.headers(nil, json: true)
        if let signature { headers[HTTPField.Name("X-Herald-Signature")!] = signature }
        return try await client.execute(uri: "/v1/webhooks/\(provider)", method: .post, headers: headers, body: ByteBuffer(bytes: body)) {
          response async throws in (response.status, try Self.json(response.body))
        }
      }
      let (unsigned, _) = try await post("foo", signature: nil)
      #expect(unsigned == .unauthorized)
      // A well-formed signature for a provider that does not exist reads exactly like a wrong one.
      let signature = WebhookSignature.header(secret: "guess", timestamp: Int(Date().timeIntervalSince1970), body: body)
      let (unknown, unknownProblem) = try await post("foo", signature: signature)
      #expect(unknown == .unauthorized && unknownProblem["field"] as? String == "signature")
      #expect(unknownProblem["detail"] as? String == "the signature does not match the body")
      #expect(!(unknownProblem["detail"] as? String ?? "").contains("foo"))
    }
  }
}
