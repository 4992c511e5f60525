import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import PostgresNIO
import SwiftProtobuf
import Testing

/// Update, list, unsubscribe, export and erase (SPEC §2).
@Suite(.timeLimit(.minutes(3))) struct SubscriberLifecycleTests {
  typealias Client = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  func withCampaign(_ body: (Client, String) async throws -> Void) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) {
      port, _ async throws in
      try await withClient(port: port) { client async throws in
        try await body(Herald_Campaign_V1_CampaignService.Client(wrapping: client), url)
      }
    }
  }

  static let ada = Herald_Campaign_V1_CreateSubscriberRequest.with {
    $0.email = "ada@example.com"
    $0.firstName = "Ada"
    $0.emailConsent = .with {
      $0.subscribed = true
      $0.source = "signup-form"
    }
  }

  @Test func updateChangesOnlyTheGivenFieldsAndChecksThem() async throws {
    try await withCampaign { campaign, _ in
      let ada = try await campaign.createSubscriber(Self.ada)
      _ = try await campaign.createSubscriber(.with { $0.email = "grace@example.com" })
      let updated = try await campaign.updateSubscriber(
        .with {
          $0.id = ada.id
          $0.lastName = "Lovelace"
          $0.phone = "+44 20 7946 0958"
          $0.smsConsent = .with {
            $0.subscribed = true
            $0.source = "sms-keyword"
          }
        })
      #expect(updated.firstName == "Ada" && updated.lastName == "Lovelace")
      #expect(updated.email == "ada@example.com" && updated.phone == "+442079460958")
      #expect(updated.smsConsent.subscribed && updated.smsConsent.source == "sms-keyword")
      #expect(updated.emailConsent == ada.emailConsent)

      let cases: [(Herald_Campaign_V1_UpdateSubscriberRequest, RPCError.Code, String)] = [
        (
          .with {
            $0.id = ada.id
            $0.email = "GRACE@example.com"
          }, .alreadyExists, "email"
        ),
        (
          .with {
            $0.id = ada.id
            $0.email = ""
          }, .invalidArgument, "email"
        ),
        (
          .with {
            $0.id = ada.id
            $0.phone = "12"
          }, .invalidArgument, "phone"
        ),
        (
          .with {
            $0.id = ada.id
            $0.emailConsent = .with {
              $0.subscribed = true
              $0.source = " "
            }
          }, .invalidArgument,
          "email_consent.source"
        ),
        (
          .with {
            $0.id = UUID().uuidString
            $0.firstName = "x"
          }, .notFound, "id"
        ),
      ]
      for (request, code, field) in cases {
        await #expect { _ = try await campaign.updateSubscriber(request) } throws: { rpcError($0) == (code, field) }
      }
      // Nothing of the rejected updates was written.
      #expect(try await campaign.getSubscriber(.with { $0.id = ada.id }) == updated)
    }
  }

  @Test func unsubscribeIsImmediateIdempotentAndInTheHistory() async throws {
    try await withCampaign { campaign, _ in
      let ada = try await campaign.createSubscriber(Self.ada)
      let request = Herald_Campaign_V1_UnsubscribeRequest.with {
        $0.id = ada.id
        $0.channel = .all
        $0.source = "list-unsubscribe-header"
      }
      let unsubscribed = try await campaign.unsubscribe(request)
      #expect(!unsubscribed.emailConsent.subscribed)
      #expect(unsubscribed.emailConsent.hasUnsubscribedAt)
      #expect(unsubscribed.emailConsent.source == "signup-form")
      _ = try await campaign.unsubscribe(request)

      let export = try await campaign.exportSubscriber(.with { $0.id = ada.id })
      #expect(export.subscriber == (try await campaign.getSubscriber(.with { $0.id = ada.id })))
      #expect(
        export.consentHistory.map { [$0.channel, "\($0.subscribed)", $0.source] } == [
          ["email", "true", "signup-form"], ["email", "false", "list-unsubscribe-header"],
        ])
      await #expect { _ = try await campaign.unsubscribe(.with { $0.id = ada.id }) } throws: {
        rpcError($0) == (.invalidArgument, "channel")
      }
    }
  }

  @Test func listPagesThroughEverySubscriberOnce() async throws {
    try await withCampaign { campaign, _ in
      var created: [String] = []
      for index in 0..<7 {
        created.append(try await campaign.createSubscriber(.with { $0.email = "user\(index)@example.com" }).id)
      }
      var seen: [String] = []
      var token = ""
      var pages = 0
      repeat {
        let page = try await campaign.listSubscribers(
          .with {
            $0.pageSize = 3
            $0.pageToken = token
          })
        seen += page.subscribers.map(\.id)
        token = page.nextPageToken
        pages += 1
      } while !token.isEmpty
      #expect(pages == 3)
      #expect(seen == created)
      for (request, field) in [
        (Herald_Campaign_V1_ListSubscribersRequest.with { $0.pageSize = 501 }, "page_size"),
        (.with { $0.pageToken = "bm9wZQ==" }, "page_token"),
        (.with { $0.pageToken = Data(UUID().uuidString.utf8).base64EncodedString() }, "page_token"),
      ] {
        await #expect { _ = try await campaign.listSubscribers(request) } throws: { rpcError($0) == (.invalidArgument, field) }
      }
    }
  }

  @Test func eraseRemovesPersonalDataButKeepsTheRow() async throws {
    try await withCampaign { campaign, url in
      var request = Self.ada
      request.phone = "+14155550123"
      request.lastName = "Lovelace"
      request.attributesJson = #"{"city": "London"}"#
      let ada = try await campaign.createSubscriber(request)
      let erased = try await campaign.eraseSubscriber(.with { $0.id = ada.id })
      #expect(erased.status == "erased")
      #expect(erased.email.isEmpty && erased.phone.isEmpty && erased.firstName.isEmpty && erased.lastName.isEmpty)
      #expect(erased.attributesJson == "{}")
      #expect(!erased.emailConsent.subscribed && erased.emailConsent.source.isEmpty)
      #expect(try await campaign.eraseSubscriber(.with { $0.id = ada.id }) == erased)
      await #expect {
        _ = try await campaign.updateSubscriber(
          .with {
            $0.id = ada.id
            $0.firstName = "A"
          })
      } throws: {
        rpcError($0).0 == .failedPrecondition
      }
      // No trace of the personal data is left in the campaign schema, and the address is free again.
      try await withDatabase(url) { db async throws in
        let rows = try await db.query(
          """
          SELECT count(*) FROM campaign.subscribers s
          WHERE s::text ILIKE '%ada@example.com%' OR s::text LIKE '%4155550123%' OR s::text LIKE '%London%'
            OR s::text LIKE '%Lovelace%'
          """
        ).collect()
        #expect(try rows.first?.decode(Int.self) == 0)
      }
      _ = try await campaign.createSubscriber(.with { $0.email = "ada@example.com" })
    }
  }
}
