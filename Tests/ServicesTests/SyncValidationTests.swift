import CRMSandbox
import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Testing

/// What the sync service normalises or refuses without a run: names and table ids stored trimmed,
/// a conflict that its job cannot settle as it stands answered FAILED_PRECONDITION saying why
/// (never INTERNAL), and the figures a metrics scrape reads from the store.
@Suite(.timeLimit(.minutes(5))) struct SyncValidationTests {
  static let job = Herald_Sync_V1_CreateJobRequest.with {
    $0.name = "crm contacts"
    $0.baseID = "appABC"
    $0.tableID = "tblContacts"
    $0.tokenEnv = SyncStack.tokenEnv
    $0.direction = .both
    $0.mappings = [SyncStack.mapping("Email", "email"), SyncStack.mapping("Plan", "attributes.plan", .manual)]
  }

  /// The sync service alone (no campaign service: nothing here reaches it) with the given token
  /// variables.
  func withSync<T: Sendable>(
    apiURL: String = "http://127.0.0.1:9", environment: [String: String] = [:],
    _ body: (SyncClient, _ url: String) async throws -> T
  ) async throws -> T {
    let url = try await TestPostgres.shared.makeDatabase()
    var settings = SyncSettings()
    settings.apiURL = apiURL
    settings.environment = environment
    return try await withRunningService(withoutReadinessDependencies(SyncDefinition.make(settings: settings)), databaseURL: url) {
      port, _ async throws in
      try await withClient(port: port) { client async throws in try await body(SyncClient(wrapping: client), url) }
    }
  }

  @Test func namesAndTableIdsAreStoredTrimmedOfBlanksAndLineBreaks() async throws {
    try await withSync { sync, _ async throws in
      var request = Self.job
      request.name = "  crm contacts\n"
      request.baseID = "\tappABC "
      request.tableID = "tblContacts\r\n"
      let created = try await sync.createJob(request)
      #expect(created.name == "crm contacts" && created.baseID == "appABC" && created.tableID == "tblContacts")
      #expect(try await sync.getJob(.with { $0.id = created.id }).name == "crm contacts")

      // The same name with other blanks around it is the same name; blanks and line breaks alone are none.
      var again = Self.job
      again.name = "crm contacts \n"
      again.tableID = "tblOther"
      await #expect { _ = try await sync.createJob(again) } throws: { rpcError($0) == (.alreadyExists, "name") }
      var sameTable = Self.job
      sameTable.name = "other"
      sameTable.tableID = " tblContacts"
      await #expect { _ = try await sync.createJob(sameTable) } throws: { rpcError($0) == (.alreadyExists, "table_id") }
      for blank in [" \n\t", "\r\n"] {
        var empty = Self.job
        empty.name = blank
        empty.tableID = "tblThird"
        await #expect { _ = try await sync.createJob(empty) } throws: { rpcError($0) == (.invalidArgument, "name") }
      }

      let renamed = try await sync.updateJob(
        .with {
          $0.id = created.id
          $0.name = "\ncrm people "
        })
      #expect(renamed.name == "crm people")
      await #expect {
        _ = try await sync.updateJob(
          .with {
            $0.id = created.id
            $0.name = "\n"
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "name")
      }
      #expect(try await sync.listJobs(.init()).jobs.map(\.name) == ["crm people"])
    }
  }

  /// ResolveConflict checks the job against its table as a run does: a mapped field the table
  /// lacks, or a token variable that is not set, is FAILED_PRECONDITION with the run's message,
  /// and the conflict stays open.
  @Test func aConflictItsJobCannotSettleIsAFailedPreconditionNamingWhy() async throws {
    let sandbox = CRMSandbox(token: SyncStack.token)
    let base = "app" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(14)
    sandbox.addTable(base: base, name: "Contacts", fields: [("Email", .email), ("First Name", .singleLineText)])
    try await withCRMSandbox(sandbox) { apiPort async throws in
      try await withSync(apiURL: "http://127.0.0.1:\(apiPort)", environment: [SyncStack.tokenEnv: SyncStack.token]) {
        sync, url async throws in
        var request = Self.job
        request.baseID = base
        request.tableID = "Contacts"
        let job = try await sync.createJob(request)
        // A conflict left for review on attributes.plan, as a run with the manual policy leaves it.
        let conflict = try await withDatabase(url) { database async throws -> String in
          let logger = Logger(label: "test.sync")
          let store = SyncStore(client: database, logger: logger)
          #expect(try await store.openWork() == (0, 0))
          let rows = try await database.query(
            """
            WITH run AS (
              INSERT INTO sync.runs (job_id, sweep_id, status, phase, finished_at)
              VALUES (\(UUID(uuidString: job.id)!), gen_random_uuid(), 'succeeded', 'done', now()) RETURNING id
            )
            INSERT INTO sync.conflicts (job_id, run_id, record_id, subscriber_id, subscriber_field, base_value, local_value,
              remote_value, policy, resolution)
            SELECT \(UUID(uuidString: job.id)!), id, 'rec00000000000001', gen_random_uuid(), 'attributes.plan', '"free"', '"team"',
              '"pro"', 'manual', 'pending'
            FROM run RETURNING id
            """, logger: logger)
          let id = try #require(try await rows.decode(UUID.self).elements().first)
          #expect(try await store.openWork() == (0, 1))
          return id.uuidString.lowercased()
        }

        func refusal(_ take: String) async -> RPCError? {
          await #expect(throws: RPCError.self) {
            _ = try await sync.resolveConflict(
              .with {
                $0.id = conflict
                $0.take = take
              })
          }
        }
        // The table has no field Plan.
        let unmapped = await refusal("remote")
        #expect(unmapped?.code == .failedPrecondition, "\(String(describing: unmapped))")
        #expect(
          unmapped?.message.contains("mappings[1].external_field 'Plan' is not a field of table Contacts (its fields: Email, First Name)")
            == true,
          "\(unmapped?.message ?? "")")
        // Its token's variable is not set.
        _ = try await sync.updateJob(
          .with {
            $0.id = job.id
            $0.tokenEnv = "MISSING_TOKEN"
          })
        let noToken = await refusal("local")
        #expect(noToken?.code == .failedPrecondition, "\(String(describing: noToken))")
        #expect(noToken?.message.contains("the environment variable MISSING_TOKEN") == true, "\(noToken?.message ?? "")")

        let open = try await sync.listConflicts(
          .with {
            $0.jobID = job.id
            $0.pending = true
          }
        ).conflicts
        #expect(open.map(\.id) == [conflict] && open.first?.resolution == "pending")
      }
    }
  }
}
