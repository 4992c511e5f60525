import Foundation
import GRPCCore
import GRPCProtobuf
import HeraldCampaign
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import SwiftProtobuf
import Testing

/// Every gRPC request is checked for strings PostgreSQL cannot store (NUL) before its handler
/// runs: INVALID_ARGUMENT naming the field, in the standard rich error model, and nothing stored.
@Suite(.timeLimit(.minutes(3))) struct RequestCheckTests {
  @Test func aNULAnywhereInARequestIsRefusedNamingTheFieldAndNothingIsStored() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let campaign = Herald_Campaign_V1_CampaignService.Client(wrapping: client)
        let refused = await #expect(throws: RPCError.self) {
          _ = try await campaign.createList(.with { $0.name = "news\u{0}letter" })
        }
        #expect(refused?.code == .invalidArgument && refused?.field == "name")
        #expect(refused?.message.contains("NUL") == true)
        // The standard details, as grpcio and grpc-go read them: google.rpc.BadRequest.
        let status = try #require(try refused?.unpackGoogleRPCStatus())
        let violation = try #require(status.details.first?.badRequest?.violations.first)
        #expect(violation.field == "name" && status.code == .invalidArgument)

        // Deep in a message: a segment condition's JSON value.
        let deep = await #expect(throws: RPCError.self) {
          _ = try await campaign.createSegment(
            .with {
              $0.name = "deep"
              $0.conditions = [
                .with {
                  $0.field = "first_name"
                  $0.op = "eq"
                  $0.value = .init(stringValue: "A\u{0}")
                }
              ]
            })
        }
        #expect(deep?.code == .invalidArgument && deep?.field == "conditions[0].value")
        #expect(try await campaign.listLists(.init()).lists.isEmpty)
        #expect(try await campaign.listSegments(.init()).segments.isEmpty)
      }
    }
  }
}
