import Foundation
import GRPCCore
import HeraldDelivery
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldRateLimit
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import HeraldVerification
import Logging
import PostgresNIO
import SwiftProtobuf
import Testing

func rpcError(_ error: any Error) -> (RPCError.Code, String?) {
  let error = error as? RPCError
  return (error?.code ?? .unknown, error?.field)
}

/// A service on its own: it does not wait for its dependencies and runs no background workers
/// (tests drive relays and schedulers themselves).
func withoutReadinessDependencies(_ definition: ServiceDefinition) -> ServiceDefinition {
  var definition = definition
  definition.readinessDependencies = []
  definition.makeWorkers = { _ in [] }
  return definition
}

@Suite(.timeLimit(.minutes(3))) struct DeliveryServiceTests {
  static func message(_ key: String, recipient: String = "ada@example.com") -> Herald_Delivery_V1_OutboundMessage {
    .with {
      $0.idempotencyKey = key
      $0.channel = .email
      $0.recipient = recipient
      $0.subject = "Hello"
      $0.body = "Hi Ada"
    }
  }

  @Test func enqueueIsIdempotentPerKey() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let delivery = Herald_Delivery_V1_DeliveryService.Client(wrapping: client)
        let campaign = UUID().uuidString
        let first = try await delivery.enqueueMessages(
          .with {
            $0.messages = [Self.message("\(campaign):1"), Self.message("\(campaign):2")]
          })
        #expect(first.accepted == 2 && first.duplicates == 0)
        // A retried batch (e.g. after a relay crash) plus one new message.
        let retry = try await delivery.enqueueMessages(
          .with {
            $0.messages = [Self.message("\(campaign):2"), Self.message("\(campaign):3"), Self.message("\(campaign):3")]
          })
        #expect(retry.accepted == 1 && retry.duplicates == 2)
        #expect(retry.results[0].messageID == first.results[1].messageID)
        #expect(retry.results[0].duplicate && !retry.results[1].duplicate && retry.results[2].duplicate)
        let stats = try await delivery.getQueueStats(.init())
        #expect(stats.byStatus == ["queued": 3])
        #expect(stats.total == 3)
      }
      try await withDatabase(url) { db async throws in
        let events = try await db.query("SELECT count(*) FROM delivery.delivery_events WHERE status = 'queued'")
          .collect().first?.decode(Int.self)
        #expect(events == 3)
      }
    }
  }

  @Test func aBadMessageRejectsTheWholeBatchNamingIt() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let delivery = Herald_Delivery_V1_DeliveryService.Client(wrapping: client)
        var bad = Self.message("k2")
        bad.channel = .unspecified
        await #expect { _ = try await delivery.enqueueMessages(.with { $0.messages = [Self.message("k1"), bad] }) } throws: {
          rpcError($0) == (.invalidArgument, "messages[1].channel")
        }
        var badID = Self.message("k3")
        badID.campaignID = "campaign-7"
        await #expect { _ = try await delivery.enqueueMessages(.with { $0.messages = [badID] }) } throws: {
          rpcError($0) == (.invalidArgument, "messages[0].campaign_id")
        }
        await #expect { _ = try await delivery.enqueueMessages(.init()) } throws: {
          rpcError($0) == (.invalidArgument, "messages")
        }
        #expect(try await delivery.getQueueStats(.init()).total == 0)
      }
    }
  }
}

@Suite(.timeLimit(.minutes(3))) struct SyncServiceTests {
  static let request = Herald_Sync_V1_CreateJobRequest.with {
    $0.name = "crm contacts"
    $0.baseID = "appABC"
    $0.tableID = "tblContacts"
    $0.tokenEnv = "AIRTABLE_TOKEN"
    $0.direction = .both
    $0.mappings = [
      .with {
        $0.externalField = "Email"
        $0.subscriberField = "email"
      },
      .with {
        $0.externalField = "Plan"
        $0.subscriberField = "attributes.plan"
      },
    ]
  }

  @Test func createsAndListsJobs() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(SyncDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let sync = Herald_Sync_V1_SyncService.Client(wrapping: client)
        let created = try await sync.createJob(Self.request)
        #expect(UUID(uuidString: created.id) != nil)
        let jobs = try await sync.listJobs(.init()).jobs
        #expect(jobs == [created])
        #expect(jobs.first?.mappings.map(\.subscriberField) == ["email", "attributes.plan"])
        await #expect { _ = try await sync.createJob(Self.request) } throws: { rpcError($0) == (.alreadyExists, "name") }
      }
    }
  }

  @Test func rejectsBadJobsNamingTheField() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    try await withRunningService(withoutReadinessDependencies(SyncDefinition.definition), databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let sync = Herald_Sync_V1_SyncService.Client(wrapping: client)
        var tokenInline = Self.request
        tokenInline.tokenEnv = "patXYZ.123secret"
        var badField = Self.request
        badField.mappings[1].subscriberField = "favourite_colour"
        var twice = Self.request
        twice.mappings[1].externalField = "Email"
        var noDirection = Self.request
        noDirection.direction = .unspecified
        for (request, field) in [
          (tokenInline, "token_env"), (badField, "mappings[1].subscriber_field"), (twice, "mappings[1].external_field"),
          (noDirection, "direction"),
        ] {
          await #expect { _ = try await sync.createJob(request) } throws: { rpcError($0) == (.invalidArgument, field) }
        }
        #expect(try await sync.listJobs(.init()).jobs.isEmpty)
      }
    }
  }
}

@Suite(.timeLimit(.minutes(3))) struct VerificationLedgerTests {
  @Test func findsCurrentMissingAndTamperedLedgers() async throws {
    let url = try await TestPostgres.shared.makeDatabase()
    // The campaign schema is migrated as its service would; delivery's ledger is then tampered with.
    try await withDatabase(url) { db async throws in
      let runner = MigrationRunner(logger: Logger(label: "test"))
      try await runner.migrate(HeraldMigrations.campaign, client: db)
      try await runner.migrate(HeraldMigrations.delivery, client: db)
      try await db.query("UPDATE delivery.schema_migrations SET checksum = repeat('0', 64) WHERE version = 1")
    }
    try await withRunningService(VerificationDefinition.definition, databaseURL: url) { port, _ async throws in
      try await withClient(port: port) { client async throws in
        let verification = Herald_Verification_V1_VerificationService.Client(wrapping: client)
        let schemas = try await verification.checkMigrationLedgers(.init()).schemas
        let byName = Dictionary(uniqueKeysWithValues: schemas.map { ($0.schema, $0) })
        #expect(byName["campaign"]?.state == .current)
        #expect(byName["verification"]?.state == .current)
        #expect(byName["ratelimit"]?.state == .missing)
        let delivery = try #require(byName["delivery"])
        #expect(delivery.state == .diverged)
        #expect(delivery.findings.map(\.kind) == ["checksum_changed"])
        #expect(delivery.findings.first?.recordedChecksum == String(repeating: "0", count: 64))
        #expect(delivery.findings.first?.expectedChecksum == HeraldMigrations.delivery.migrations[0].checksum)

        await #expect { _ = try await verification.checkMigrationLedgers(.with { $0.schemas = ["nope"] }) } throws: {
          rpcError($0) == (.invalidArgument, "schemas")
        }
      }
    }
    try await withDatabase(url) { db async throws in
      let status = try await db.query("SELECT overall_status FROM verification.reports WHERE kind = 'ledger'")
        .collect().first?.decode(String.self)
      #expect(status == "critical")
    }
  }
}
