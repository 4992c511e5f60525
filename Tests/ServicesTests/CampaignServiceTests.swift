import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import SwiftProtobuf
import Testing

@Suite(.timeLimit(.minutes(3))) struct CampaignServiceTests {
  func withCampaign(_ body: (Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>) async throws -> Void) async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        try await body(Herald_Campaign_V1_CampaignService.Client(wrapping: client))
      }
    }
  }

  func field(of error: any Error) -> (RPCError.Code, String?)? {
    guard let error = error as? RPCError else { return nil }
    return (error.code, error.field)
  }

  @Test func createsNormalisesAndReadsBack() async throws {
    try await withCampaign { campaign in
      var request = Herald_Campaign_V1_CreateSubscriberRequest()
      request.email = "  Ada.Lovelace@Example.COM "
      request.phone = "+44 20 7946 0958"
      request.firstName = "Ada"
      request.attributesJson = #"{"plan": "pro"}"#
      request.emailConsent = .with {
        $0.subscribed = true
        $0.source = "signup-form"
      }
      let created = try await campaign.createSubscriber(request)
      #expect(created.email == "ada.lovelace@example.com")
      #expect(created.phone == "+442079460958")
      #expect(created.emailConsent.subscribed)
      #expect(created.emailConsent.source == "signup-form")
      #expect(created.emailConsent.hasConsentedAt)
      #expect(!created.smsConsent.subscribed)
      #expect(created.status == "active")

      let fetched = try await campaign.getSubscriber(.with { $0.id = created.id })
      #expect(fetched == created)
    }
  }

  @Test func rejectsDuplicatesOnNormalisedKeys() async throws {
    try await withCampaign { campaign in
      _ = try await campaign.createSubscriber(.with { $0.email = "grace@example.com" })
      await #expect {
        _ = try await campaign.createSubscriber(.with { $0.email = "GRACE@example.com" })
      } throws: { error in
        field(of: error)! == (.alreadyExists, "email")
      }
    }
  }

  @Test(arguments: [
    (Herald_Campaign_V1_CreateSubscriberRequest.with { $0.email = "not-an-email" }, "email"),
    (.with { $0.email = "a@b" }, "email"),
    (.with { $0.phone = "020 7946 0958" }, "phone"),
    (.with { $0.phone = "+12" }, "phone"),
    (.with { $0.firstName = "Nobody" }, "email"),
    (
      .with {
        $0.email = "x@example.com"
        $0.attributesJson = "[1, 2]"
      }, "attributes_json"
    ),
    (
      .with {
        $0.email = "x@example.com"
        $0.emailConsent = .with { $0.subscribed = true }
      }, "email_consent.source"
    ),
    (
      .with {
        $0.email = "x@example.com"
        $0.smsConsent = .with {
          $0.subscribed = true
          $0.source = "form"
        }
      }, "sms_consent"
    ),
  ])
  func rejectsBadInputNamingTheField(request: Herald_Campaign_V1_CreateSubscriberRequest, expected: String) async throws {
    try await withCampaign { campaign in
      await #expect {
        _ = try await campaign.createSubscriber(request)
      } throws: { error in
        field(of: error)! == (.invalidArgument, expected)
      }
    }
  }

  /// PostgreSQL's jsonb refuses `\u0000`: attributes holding it are refused naming the field (not
  /// a database error), and nothing is stored.
  @Test func refusesAttributesHoldingNUL() async throws {
    try await withCampaign { campaign in
      for attributes in [#"{"a":"x\u0000"}"#, #"{"a\u0000":1}"#, #"{"a":{"b":["\u0000"]}}"#] {
        await #expect {
          _ = try await campaign.createSubscriber(
            .with {
              $0.email = "nul@example.com"
              $0.attributesJson = attributes
            })
        } throws: { error in
          field(of: error)! == (.invalidArgument, "attributes_json")
            && (error as? RPCError)?.message == "attributes_json holds a NUL character (U+0000), which cannot be stored"
        }
      }
      #expect(try await campaign.listSubscribers(.init()).subscribers.isEmpty)
      // A backslash before "u0000" is text, not NUL.
      let created = try await campaign.createSubscriber(
        .with {
          $0.email = "nul@example.com"
          $0.attributesJson = #"{"a":"\\u0000"}"#
        })
      #expect(created.attributesJson.contains(#"\\u0000"#))
    }
  }

  @Test func getNamesBadAndUnknownIDs() async throws {
    try await withCampaign { campaign in
      await #expect { _ = try await campaign.getSubscriber(.with { $0.id = "nope" }) } throws: {
        field(of: $0)! == (.invalidArgument, "id")
      }
      await #expect { _ = try await campaign.getSubscriber(.with { $0.id = UUID().uuidString }) } throws: {
        field(of: $0)! == (.notFound, "id")
      }
    }
  }
}
