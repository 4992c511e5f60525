import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import SwiftProtobuf
import Testing

/// Bulk import over the streaming RPC (SPEC §2): per-row errors, valid rows kept, consent rules.
@Suite(.timeLimit(.minutes(3))) struct SubscriberImportTests {
  typealias Client = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  func withCampaign(_ body: (Client) async throws -> Void) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in try await body(Client(wrapping: client)) }
    }
  }

  static func row(_ number: Int64, _ configure: (inout Herald_Campaign_V1_CreateSubscriberRequest) -> Void) -> Herald_Campaign_V1_ImportRow
  {
    .with {
      $0.row = number
      configure(&$0.subscriber)
    }
  }

  func send(_ client: Client, options: Herald_Campaign_V1_ImportOptions, chunks: [[Herald_Campaign_V1_ImportRow]]) async throws
    -> Herald_Campaign_V1_ImportSubscribersResponse
  {
    try await client.importSubscribers(options: .timeout(.seconds(30))) { writer in
      for (index, rows) in chunks.enumerated() {
        try await writer.write(
          .with {
            if index == 0 { $0.options = options }
            $0.rows = rows
          })
      }
    }
  }

  @Test func keepsValidRowsAndReportsBadOnesByRow() async throws {
    try await withCampaign { client async throws in
      let list = try await client.createList(.with { $0.name = "imported" })
      // 1,200 good rows over three messages (more than two chunks), with bad rows among them.
      var chunks: [[Herald_Campaign_V1_ImportRow]] = []
      var number: Int64 = 1
      for _ in 0..<3 {
        var rows: [Herald_Campaign_V1_ImportRow] = []
        for _ in 0..<400 {
          number += 1
          let n = number
          rows.append(
            Self.row(n) {
              $0.email = "Person\(n)@Example.com"
              $0.emailConsent.subscribed = true
            })
        }
        chunks.append(rows)
      }
      chunks[1] += [
        Self.row(5000) { $0.email = "not-an-email" },
        Self.row(5001) { $0.phone = "0800 123" },
        Self.row(5002) {
          $0.email = "big@example.com"
          $0.attributesJson = "{\"blob\": \"\(String(repeating: "x", count: 40_000))\"}"
        },
        Self.row(5003) {
          $0.email = "PERSON2@example.com"
          $0.firstName = "Again"
        },  // already in this import
        .with {
          $0.row = 5004
          $0.error = "the row has 3 fields; the header has 2"
          $0.errorField = "row"
        },
        Self.row(5005) {
          $0.email = "sms@example.com"
          $0.smsConsent.subscribed = true
        },  // consent without a phone
      ]
      let options = Herald_Campaign_V1_ImportOptions.with {
        $0.listID = list.id
        $0.consentSource = "crm-export-2026-11"
      }
      let response = try await send(client, options: options, chunks: chunks)
      #expect(response.created == 1_200 && response.existing == 1 && response.updated == 0 && response.failed == 5)
      #expect(response.errors.map(\.row) == [5000, 5001, 5002, 5004, 5005])
      #expect(response.errors.map(\.field) == ["email", "phone", "attributes_json", "row", "sms_consent"])

      let listed = try await client.getList(.with { $0.id = list.id })
      #expect(listed.counts.subscribers == 1_200 && listed.counts.emailSubscribed == 1_200)
      var all: [Herald_Campaign_V1_Subscriber] = []
      var token = ""
      repeat {
        let page = try await client.listSubscribers(
          .with {
            $0.pageSize = 500
            $0.pageToken = token
          })
        all += page.subscribers
        token = page.nextPageToken
      } while !token.isEmpty
      #expect(all.count == 1_200)
      let person2 = try #require(all.first { $0.email == "person2@example.com" })
      #expect(person2.emailConsent.source == "crm-export-2026-11")
      #expect(person2.firstName == "")  // skip mode leaves existing subscribers alone
    }
  }

  @Test func updateMergesButNeverUndoesAnUnsubscribe() async throws {
    try await withCampaign { client async throws in
      let ada = try await client.createSubscriber(
        .with {
          $0.email = "ada@example.com"
          $0.attributesJson = #"{"plan": "free", "city": "London"}"#
          $0.emailConsent = .with {
            $0.subscribed = true
            $0.source = "signup-form"
          }
        })
      _ = try await client.unsubscribe(
        .with {
          $0.id = ada.id
          $0.channel = .email
        })
      let grace = try await client.createSubscriber(.with { $0.email = "grace@example.com" })
      let response = try await send(
        client, options: .with { $0.onExisting = "update" },
        chunks: [
          [
            Self.row(2) {
              $0.email = "ADA@example.com"
              $0.firstName = "Ada"
              $0.attributesJson = #"{"plan": "pro"}"#
              $0.emailConsent.subscribed = true
            },
            Self.row(3) {
              $0.email = "grace@example.com"
              $0.phone = "+14155550123"
              $0.emailConsent.subscribed = true
            },
            Self.row(4) {
              $0.email = "grace@example.com"
              $0.phone = "+14155550999"
            },  // phone conflicts with row 3's
          ]
        ])
      #expect(response.updated == 2 && response.failed == 1 && response.errors.first?.field == "phone")
      let updatedAda = try await client.getSubscriber(.with { $0.id = ada.id })
      #expect(updatedAda.firstName == "Ada")
      #expect(updatedAda.attributesJson.contains(#""plan": "pro""#) && updatedAda.attributesJson.contains("London"))
      #expect(!updatedAda.emailConsent.subscribed)  // the unsubscribe stands
      let updatedGrace = try await client.getSubscriber(.with { $0.id = grace.id })
      #expect(updatedGrace.phone == "+14155550123" && updatedGrace.emailConsent.subscribed)
      #expect(updatedGrace.emailConsent.source == "import")
      let history = try await client.exportSubscriber(.with { $0.id = grace.id }).consentHistory
      #expect(history.map(\.source) == ["import"])
    }
  }

  /// Rows of one chunk are written together, yet each sees what the rows before it wrote: a
  /// person twice in the file is created once and then updated; a row whose e-mail and phone
  /// belong to two subscribers fails alone; the list gets every row that was not refused.
  @Test func rowsOfOneChunkSeeTheRowsBeforeThem() async throws {
    try await withCampaign { client async throws in
      let list = try await client.createList(.with { $0.name = "together" })
      _ = try await client.createSubscriber(
        .with {
          $0.email = "ada@example.com"
          $0.phone = "+14155550111"
        })
      _ = try await client.createSubscriber(.with { $0.phone = "+14155550122" })
      let bob = try await client.createSubscriber(.with { $0.email = "bob@example.com" })
      let response = try await send(
        client,
        options: .with {
          $0.onExisting = "update"
          $0.listID = list.id
        },
        chunks: [
          [
            Self.row(2) {
              $0.email = "new@example.com"
              $0.emailConsent.subscribed = true
            },
            Self.row(3) {
              $0.email = "NEW@example.com"
              $0.firstName = "Again"
            },
            Self.row(4) {
              $0.phone = "+1 415 555 0100"
              $0.smsConsent.subscribed = true
            },
            Self.row(5) {
              $0.email = "ada@example.com"
              $0.phone = "+14155550122"
            },
            Self.row(6) {
              $0.email = "bob@example.com"
              $0.emailConsent.subscribed = true
            },
            Self.row(7) {
              $0.email = "p@example.com"
              $0.phone = "+14155550100"
            },
          ]
        ])
      #expect(response.created == 2 && response.updated == 3 && response.failed == 1, "\(response)")
      #expect(response.errors.map(\.row) == [5] && response.errors.first?.field == "email")
      let found = try await client.lookupSubscribers(.with { $0.emails = ["new@example.com", "p@example.com"] }).subscribers
      let new = try #require(found.first { $0.email == "new@example.com" })
      #expect(new.firstName == "Again" && new.emailConsent.subscribed && new.emailConsent.source == "import")
      let phoneOnly = try #require(found.first { $0.email == "p@example.com" })
      #expect(phoneOnly.phone == "+14155550100" && phoneOnly.smsConsent.subscribed)
      #expect(try await client.exportSubscriber(.with { $0.id = new.id }).consentHistory.map(\.source) == ["import"])
      #expect(try await client.exportSubscriber(.with { $0.id = phoneOnly.id }).consentHistory.map(\.channel) == ["sms"])
      let updatedBob = try await client.getSubscriber(.with { $0.id = bob.id })
      #expect(updatedBob.emailConsent.subscribed && updatedBob.emailConsent.source == "import")
      let listed = try await client.getList(.with { $0.id = list.id })
      #expect(listed.counts.subscribers == 3, "new, the phone-only one and bob; not the refused row")
    }
  }

  /// One subscriber reached through its e-mail and through its phone by rows of one chunk: the
  /// rows apply in file order, each on top of the one before (the last tier wins, nothing merged
  /// in between is lost).
  @Test func rowsReachingOneSubscriberApplyInFileOrder() async throws {
    try await withCampaign { client async throws in
      let x = try await client.createSubscriber(
        .with {
          $0.email = "x@example.com"
          $0.phone = "+14155550177"
        })
      let response = try await send(
        client, options: .with { $0.onExisting = "update" },
        chunks: [
          [
            Self.row(2) {
              $0.email = "x@example.com"
              $0.firstName = "One"
              $0.attributesJson = #"{"tier": "bronze"}"#
            },
            Self.row(3) {
              $0.email = "x@example.com"
              $0.attributesJson = #"{"tier": "gold"}"#
            },
            Self.row(4) {
              $0.phone = "+14155550177"
              $0.attributesJson = #"{"tier": "silver", "city": "Oslo"}"#
            },
          ]
        ])
      #expect(response.updated == 3 && response.failed == 0, "\(response)")
      let stored = try await client.getSubscriber(.with { $0.id = x.id })
      let attributes = try #require(try JSONSerialization.jsonObject(with: Data(stored.attributesJson.utf8)) as? [String: String])
      #expect(attributes == ["tier": "silver", "city": "Oslo"] && stored.firstName == "One", "\(stored)")
    }
  }

  /// The import checks its own strings: a row holding NUL (raw, or `\u0000` in its attributes,
  /// which jsonb refuses) is reported naming the field and not stored; the other rows are.
  @Test func rowsHoldingNULAreReportedAndTheOthersImported() async throws {
    try await withCampaign { client async throws in
      let response = try await send(
        client, options: .init(),
        chunks: [
          [
            Self.row(2) { $0.email = "first@example.com" },
            Self.row(3) {
              $0.email = "nul@example.com"
              $0.firstName = "A\u{0}da"
            },
            Self.row(4) {
              $0.email = "second@example.com"
              $0.emailConsent = .with {
                $0.subscribed = true
                $0.source = "form\u{0}"
              }
            },
            Self.row(5) {
              $0.email = "third@example.com"
              $0.attributesJson = #"{"a": "x\u0000"}"#
            },
            Self.row(6) {
              $0.email = "fourth@example.com"
              $0.firstName = "Grace"
            },
          ]
        ])
      #expect(response.created == 2 && response.failed == 3)
      #expect(response.errors.map(\.row) == [3, 4, 5])
      #expect(response.errors.map(\.field) == ["first_name", "email_consent.source", "attributes_json"])
      #expect(response.errors[0].message == "first_name holds a NUL character (U+0000), which cannot be stored")
      let stored = try await client.listSubscribers(.init()).subscribers
      #expect(Set(stored.map(\.email)) == ["first@example.com", "fourth@example.com"])
    }
  }

  @Test func badOptionsAreRefusedNamingTheField() async throws {
    try await withCampaign { client async throws in
      let cases: [(Herald_Campaign_V1_ImportOptions, RPCError.Code, String)] = [
        (.with { $0.onExisting = "merge" }, .invalidArgument, "options.on_existing"),
        (.with { $0.listID = UUID().uuidString }, .notFound, "options.list_id"),
        (.with { $0.listID = "list-1" }, .invalidArgument, "options.list_id"),
        (.with { $0.consentSource = "crm\u{0}" }, .invalidArgument, "options.consent_source"),
      ]
      for (options, code, field) in cases {
        await #expect {
          _ = try await send(client, options: options, chunks: [[Self.row(2) { $0.email = "x@example.com" }]])
        } throws: { rpcError($0) == (code, field) }
      }
      #expect(try await client.listSubscribers(.init()).subscribers.isEmpty)
    }
  }
}
