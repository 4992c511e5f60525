import AsyncHTTPClient
import CRMSandbox
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import Logging
import NIOHTTP1
import PostgresNIO
import SwiftProtobuf
import Testing

typealias SyncClient = Herald_Sync_V1_SyncService.Client<HTTP2ClientTransport.Posix>
typealias CampaignRPC = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

/// The campaign and sync services in-process, the sync service talking to a local Airtable-style
/// server (CRMSandbox) through the real connector, on a database of the suite's own.
struct SyncStack {
  static let token = "patSYNC.0123456789abcdef"
  static let tokenEnv = "CRM_TOKEN"
  static let fields: [(name: String, type: CRMSandbox.FieldType)] = [
    ("Email", .email), ("First Name", .singleLineText), ("Last Name", .singleLineText), ("Subscribed", .checkbox),
    ("City", .singleLineText), ("Plan", .singleLineText), ("Engagement", .singleLineText), ("Last Messaged", .dateTime),
    ("Last Modified", .lastModifiedTime),
  ]

  let sandbox: CRMSandbox
  let base: String
  let sync: SyncClient
  let campaign: CampaignRPC
  let database: PostgresClient
  let url: String
  let apiURL: String

  /// `scheduler`: the sync process runs its scheduler too (the worker that stops runs at
  /// shutdown always runs).
  static func run<T: Sendable>(
    rateLimitPenalty: Duration = .seconds(30), scheduler: Bool = false, configure: (inout SyncSettings) -> Void = { _ in },
    _ body: (SyncStack) async throws -> T
  ) async throws -> T {
    let url = try await TestPostgres.shared.makeDatabase()
    let sandbox = CRMSandbox(token: token, rateLimitPenalty: rateLimitPenalty)
    let base = "app" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(14)
    sandbox.addTable(base: base, name: "Contacts", fields: fields)
    return try await withCRMSandbox(sandbox) { apiPort async throws in
      try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) {
        campaignPort, _ async throws in
        var settings = SyncSettings()
        settings.apiURL = "http://127.0.0.1:\(apiPort)"
        settings.environment = [tokenEnv: token]
        configure(&settings)
        var definition = SyncDefinition.make(settings: settings)
        definition.readinessDependencies = []
        if !scheduler {
          // The runs' own worker stays: at the end of each test it stops the runs still going
          // (interrupted, as in production) instead of leaving them to the next test.
          let workers = definition.makeWorkers
          definition.makeWorkers = { try workers($0).filter { $0.name != SyncDefinition.schedulerWorker } }
        }
        return try await withRunningService(
          definition, databaseURL: url,
          dependencies: ["campaign": ServiceAddress(host: "127.0.0.1", port: campaignPort)]
        ) { syncPort, _ async throws in
          try await withClient(port: syncPort) { syncClient async throws in
            try await withClient(port: campaignPort) { campaignClient async throws in
              try await withDatabase(url) { database async throws in
                try await body(
                  SyncStack(
                    sandbox: sandbox, base: base, sync: SyncClient(wrapping: syncClient), campaign: CampaignRPC(wrapping: campaignClient),
                    database: database, url: url, apiURL: settings.apiURL))
              }
            }
          }
        }
      }
    }
  }

  static func mapping(_ external: String, _ local: String, _ policy: Herald_Sync_V1_ConflictPolicy = .unspecified)
    -> Herald_Sync_V1_FieldMapping
  {
    .with {
      $0.externalField = external
      $0.subscriberField = local
      $0.conflictPolicy = policy
    }
  }

  func createJob(
    table: String = "Contacts", direction: Herald_Sync_V1_Direction = .pull, mappings: [Herald_Sync_V1_FieldMapping],
    configure: (inout Herald_Sync_V1_CreateJobRequest) -> Void = { _ in }
  ) async throws -> Herald_Sync_V1_Job {
    var request = Herald_Sync_V1_CreateJobRequest.with {
      $0.name = "\(table) of \(base)"
      $0.baseID = base
      $0.tableID = table
      $0.tokenEnv = Self.tokenEnv
      $0.direction = direction
      $0.mappings = mappings
      $0.modifiedField = "Last Modified"
      $0.overlapSeconds = 1
    }
    configure(&request)
    return try await sync.createJob(request)
  }

  /// Starts a run and waits for it to end.
  func run(_ job: Herald_Sync_V1_Job, dryRun: Bool = false, full: Bool = false) async throws -> Herald_Sync_V1_Run {
    let started = try await sync.startRun(
      .with {
        $0.jobID = job.id
        $0.dryRun = dryRun
        $0.full = full
      })
    #expect(started.status == .running)
    return try await finished(started.id)
  }

  func finished(_ id: String, timeout: Duration = .seconds(150)) async throws -> Herald_Sync_V1_Run {
    var run = Herald_Sync_V1_Run()
    try await eventually(timeout: timeout, "sync run \(id) to end") {
      run = try await sync.getRun(.with { $0.id = id })
      return run.status != .running
    }
    return run
  }

  func count(_ sql: String) async throws -> Int {
    try await database.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test.sync")).decode(Int.self).elements().first ?? -1
  }

  func subscriber(email: String) async throws -> Herald_Campaign_V1_Subscriber? {
    try await campaign.lookupSubscribers(.with { $0.emails = [email] }).subscribers.first
  }

  func remote(_ id: String) -> [String: JSONValue] {
    sandbox.records(base: base, table: "Contacts").first { $0.id == id }?.fields ?? [:]
  }

  static func person(_ n: Int, prefix: String = "person") -> [String: JSONValue] {
    [
      "Email": .string("\(prefix)\(n)@example.com"), "First Name": .string("First\(n)"), "Subscribed": .bool(n % 2 == 0),
      "City": .string("City\(n % 7)"),
    ]
  }
}

@Suite(.serialized, .timeLimit(.minutes(10))) struct SyncRunTests {
  static let pullMappings = [
    SyncStack.mapping("Email", "email"), SyncStack.mapping("First Name", "first_name"),
    SyncStack.mapping("Subscribed", "email_subscribed"), SyncStack.mapping("City", "attributes.city"),
  ]

  @Test func firstSyncOf5000RecordsThenIncrementalRunsReadOnlyChanges() async throws {
    try await SyncStack.run { stack async throws in
      let old = Date().addingTimeInterval(-3600)
      var ids: [String] = []
      for chunk in 0..<50 {
        ids += stack.sandbox.insert(
          base: stack.base, table: "Contacts", (chunk * 100..<chunk * 100 + 100).map { SyncStack.person($0) },
          at: old.addingTimeInterval(Double(chunk)))
      }
      let job = try await stack.createJob(mappings: Self.pullMappings)
      let started = try await stack.sync.startRun(.with { $0.jobID = job.id })
      // One run at a time per table.
      await #expect { _ = try await stack.sync.startRun(.with { $0.jobID = job.id }) } throws: { rpcError($0).0 == .failedPrecondition }
      let first = try await stack.finished(started.id)
      #expect(first.status == .succeeded, "\(first.error)")
      #expect(first.full)
      // (A listing whose cursor expired under load starts over: what it reads again are duplicates.)
      #expect(first.counts.recordsRead - first.counts.duplicates == 5000, "\(first.counts)")
      #expect(first.counts.created == 5000 && first.counts.errors == 0, "\(first.counts)")
      #expect(first.counts.apiCalls >= 51)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 5000)
      #expect(
        try await stack.count(
          "SELECT count(*)::int FROM campaign.subscribers WHERE email_subscribed AND email_consent_source LIKE 'sync:%'") == 2500)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE attributes->>'city' = 'City3'") == 714)
      #expect(try await stack.count("SELECT count(DISTINCT subscriber_id)::int FROM sync.records") == 5000)
      let cursor = try await stack.sync.getJob(.with { $0.id = job.id }).cursor
      #expect(first.cursorAfter == cursor && !cursor.isEmpty)

      // Three records change and two are added: the next run reads those five only.
      for id in ids[10..<13] { stack.sandbox.modify(base: stack.base, table: "Contacts", id: id, ["First Name": .string("Changed")]) }
      stack.sandbox.insert(base: stack.base, table: "Contacts", [SyncStack.person(9001), SyncStack.person(9002)])
      let second = try await stack.run(job)
      #expect(second.status == .succeeded, "\(second.error)")
      #expect(!second.full && second.cursorBefore == cursor)
      // The last page of the first run comes again through the overlap window, as duplicates.
      #expect(second.counts.recordsRead - second.counts.duplicates == 5)
      #expect(second.counts.updated == 3 && second.counts.created == 2 && second.counts.unchanged == 0)
      #expect(try await stack.subscriber(email: "person11@example.com")?.firstName == "Changed")
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 5002)

      // Nothing changed since: the overlap window reads them again and applies nothing.
      let third = try await stack.run(job)
      #expect(third.status == .succeeded)
      #expect(third.counts.recordsRead == third.counts.duplicates)
      #expect(third.counts.created == 0 && third.counts.updated == 0)
    }
  }

  @Test func conflictsAreDecidedByEachFieldsPolicy() async throws {
    try await SyncStack.run { stack async throws in
      let ids = stack.sandbox.insert(
        base: stack.base, table: "Contacts",
        [
          [
            "Email": .string("ada@example.com"), "First Name": .string("Ada"), "Last Name": .string("Lovelace"), "City": .string("London"),
            "Plan": .string("free"),
          ],
          ["Email": .string("grace@example.com"), "First Name": .string("Grace"), "City": .string("Arlington")],
        ], at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(
        direction: .both,
        mappings: [
          SyncStack.mapping("Email", "email"), SyncStack.mapping("First Name", "first_name", .remoteWins),
          SyncStack.mapping("Last Name", "last_name", .localWins), SyncStack.mapping("City", "attributes.city", .lastWriterWins),
          SyncStack.mapping("Plan", "attributes.plan", .manual),
        ])
      let first = try await stack.run(job)
      #expect(first.status == .succeeded && first.counts.created == 2 && first.counts.pushed == 0, "\(first.error)")

      // Ada: the table changes first, then Herald; Grace: Herald first, then the table.
      stack.sandbox.modify(
        base: stack.base, table: "Contacts", id: ids[0],
        ["First Name": .string("Augusta"), "Last Name": .string("King"), "City": .string("Paris"), "Plan": .string("pro")],
        at: Date().addingTimeInterval(-60))
      let ada = try #require(try await stack.subscriber(email: "ada@example.com"))
      _ = try await stack.campaign.updateSubscriber(
        .with {
          $0.id = ada.id
          $0.firstName = "Ada L."
          $0.lastName = "Byron"
          $0.attributesJson = #"{"city": "Rome", "plan": "team"}"#
        })
      let grace = try #require(try await stack.subscriber(email: "grace@example.com"))
      _ = try await stack.campaign.updateSubscriber(
        .with {
          $0.id = grace.id
          $0.attributesJson = #"{"city": "Oslo"}"#
        })
      try await Task.sleep(for: .milliseconds(20))
      stack.sandbox.modify(base: stack.base, table: "Contacts", id: ids[1], ["City": .string("Lima")])

      let second = try await stack.run(job)
      #expect(second.status == .succeeded, "\(second.error)")
      #expect(second.counts.conflicts == 5)
      let adaNow = try #require(try await stack.subscriber(email: "ada@example.com"))
      let adaAttributes = JSONValue.parse(adaNow.attributesJson)?.object ?? [:]
      #expect(adaNow.firstName == "Augusta")  // remote wins
      #expect(adaNow.lastName == "Byron")  // local wins
      #expect(adaAttributes["city"] == .string("Rome"))  // Herald wrote last
      #expect(adaAttributes["plan"] == .string("team"))  // manual: left for review
      let graceNow = try #require(try await stack.subscriber(email: "grace@example.com"))
      #expect(JSONValue.parse(graceNow.attributesJson)?.object?["city"] == .string("Lima"))  // the table wrote last
      // The local winners were written back to the table; the pending field was not.
      let remoteAda = stack.remote(ids[0])
      #expect(remoteAda["Last Name"] == .string("Byron") && remoteAda["City"] == .string("Rome"))
      #expect(remoteAda["First Name"] == .string("Augusta") && remoteAda["Plan"] == .string("pro"))
      #expect(second.counts.pushed == 1)

      let conflicts = try await stack.sync.listConflicts(.with { $0.jobID = job.id }).conflicts
      let decided = Dictionary(uniqueKeysWithValues: conflicts.filter { $0.recordID == ids[0] }.map { ($0.subscriberField, $0.resolution) })
      #expect(decided == ["first_name": "remote", "last_name": "local", "attributes.city": "local", "attributes.plan": "pending"])
      #expect(conflicts.first { $0.recordID == ids[1] }?.resolution == "remote")
      let pending = try await stack.sync.listConflicts(
        .with {
          $0.jobID = job.id
          $0.pending = true
        }
      ).conflicts
      #expect(pending.count == 1)
      let open = try #require(pending.first)
      #expect(open.localJson == #""team""# && open.remoteJson == #""pro""# && open.baseJson == #""free""#)

      // A run while it is open leaves it as it is.
      let third = try await stack.run(job)
      #expect(third.status == .succeeded && third.counts.pushed == 0 && third.counts.updated == 0, "\(third.error)")
      #expect(
        try await stack.sync.listConflicts(
          .with {
            $0.jobID = job.id
            $0.pending = true
          }
        ).conflicts.count == 1)

      await #expect {
        _ = try await stack.sync.resolveConflict(
          .with {
            $0.id = open.id
            $0.take = "mine"
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "take")
      }
      let resolved = try await stack.sync.resolveConflict(
        .with {
          $0.id = open.id
          $0.take = "remote"
        })
      #expect(resolved.resolution == "remote" && resolved.hasResolvedAt)
      let adaResolved = try #require(try await stack.subscriber(email: "ada@example.com"))
      #expect(JSONValue.parse(adaResolved.attributesJson)?.object?["plan"] == .string("pro"))
      await #expect {
        _ = try await stack.sync.resolveConflict(
          .with {
            $0.id = open.id
            $0.take = "local"
          })
      } throws: {
        rpcError($0).0 == .failedPrecondition
      }
      // Our own writes come back from the table as changes to records: they are not bounced back.
      let fourth = try await stack.run(job)
      #expect(fourth.status == .succeeded, "\(fourth.error)")
      #expect(fourth.counts.conflicts == 0 && fourth.counts.pushed == 0 && fourth.counts.updated == 0)
    }
  }

  @Test func pushWritesEngagementBackWithoutEchoes() async throws {
    try await SyncStack.run { stack async throws in
      let ids = stack.sandbox.insert(
        base: stack.base, table: "Contacts", [SyncStack.person(1), SyncStack.person(2)], at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(
        direction: .both,
        mappings: [
          SyncStack.mapping("Email", "email"), SyncStack.mapping("Engagement", "engagement_status"),
          SyncStack.mapping("Last Messaged", "last_messaged_at"),
        ])
      let first = try await stack.run(job)
      #expect(first.status == .succeeded && first.counts.created == 2, "\(first.error)")
      #expect(first.counts.pushed == 2)
      #expect(stack.remote(ids[0])["Engagement"] == .string("new"))

      // The delivery feed's counts for one subscriber (as the campaign service keeps them).
      let one = try #require(try await stack.subscriber(email: "person1@example.com"))
      try await stack.database.query(
        """
        INSERT INTO campaign.subscriber_engagement (subscriber_id, delivered, opened, clicked, score, last_event_at, last_engaged_at)
        VALUES (\(UUID(uuidString: one.id)!), 4, 3, 1, 63, '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z')
        """, logger: Logger(label: "test.sync"))
      let second = try await stack.run(job)
      #expect(second.status == .succeeded && second.counts.pushed == 1, "\(second.error)")
      #expect(stack.remote(ids[0])["Engagement"] == .string("engaged"))
      #expect(stack.remote(ids[0])["Last Messaged"]?.stringValue?.hasPrefix("2026-11-30T10:00:00") == true)
      #expect(stack.remote(ids[1])["Engagement"] == .string("new"))

      let third = try await stack.run(job)
      #expect(third.status == .succeeded, "\(third.error)")
      #expect(third.counts.pushed == 0 && third.counts.updated == 0 && third.counts.conflicts == 0)
    }
  }

  @Test func anExpiredCursorRestartsFromTheCheckpointNotFromTheTop() async throws {
    try await SyncStack.run { stack async throws in
      let old = Date().addingTimeInterval(-3600)
      for chunk in 0..<30 {
        stack.sandbox.insert(
          base: stack.base, table: "Contacts", (chunk * 100..<chunk * 100 + 100).map { SyncStack.person($0) },
          at: old.addingTimeInterval(Double(chunk * 10)))
      }
      let job = try await stack.createJob(mappings: Self.pullMappings)
      let started = try await stack.sync.startRun(.with { $0.jobID = job.id })
      try await eventually(timeout: .seconds(120), "a few pages to be applied") {
        try await stack.sync.getRun(.with { $0.id = started.id }).counts.created >= 500
      }
      stack.sandbox.expireIterators()
      let run = try await stack.finished(started.id)
      #expect(run.status == .succeeded, "\(run.error)")
      #expect(run.counts.cursorRestarts == 1 && run.counts.created == 3000, "\(run.counts)")
      // Read again: the checkpoint's page (the overlap), not the 500+ already applied.
      #expect(run.counts.recordsRead <= 3000 + 200, "\(run.counts)")
    }
  }

  @Test func a429StormLosesNoRecord() async throws {
    try await SyncStack.run(rateLimitPenalty: .seconds(2), configure: { $0.rateLimitWait = .seconds(2) }) { stack async throws in
      stack.sandbox.insert(
        base: stack.base, table: "Contacts", (0..<600).map { SyncStack.person($0) }, at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(mappings: Self.pullMappings)
      // The run's first request is refused as over the limit; then another client of the base
      // goes over it again and again (each time the base is locked out for 2 s) while the run goes.
      stack.sandbox.failNext(status: 429, body: #"{"errors":[{"error":"RATE_LIMIT_REACHED","message":"Rate limit exceeded"}]}"#)
      let started = try await stack.sync.startRun(.with { $0.jobID = job.id })
      try await eventually("the run to be refused once") {
        try await stack.sync.getRun(.with { $0.id = started.id }).counts.rateLimited >= 1
      }
      var request = HTTPClientRequest(url: "\(stack.apiURL)/v0/\(stack.base)/Contacts?pageSize=1")
      request.headers.add(name: "Authorization", value: "Bearer \(SyncStack.token)")
      for _ in 0..<60 {
        _ = try? await HTTPClient.shared.execute(request, timeout: .seconds(5))
        try? await Task.sleep(for: .milliseconds(40))
      }
      let run = try await stack.finished(started.id)
      #expect(stack.sandbox.rateLimitedCount > 0)
      #expect(run.status == .succeeded, "\(run.error)")
      #expect(run.counts.rateLimited >= 1)
      #expect(run.counts.created == 600 && run.counts.errors == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 600)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records") == 600)
    }
  }

  @Test func deletesAreSoftAndCappedAndADryRunChangesNothing() async throws {
    try await SyncStack.run { stack async throws in
      let old = Date().addingTimeInterval(-3600)
      stack.sandbox.addTable(base: stack.base, name: "Leads", fields: SyncStack.fields)
      let contacts = stack.sandbox.insert(base: stack.base, table: "Contacts", (0..<50).map { SyncStack.person($0) }, at: old)
      let leads = stack.sandbox.insert(base: stack.base, table: "Leads", (0..<20).map { SyncStack.person($0, prefix: "lead") }, at: old)
      let capped = try await stack.createJob(mappings: Self.pullMappings)
      let loose = try await stack.createJob(table: "Leads", mappings: Self.pullMappings) { $0.maxDeletePercent = 30 }
      #expect(try await stack.run(capped).counts.created == 50)
      #expect(try await stack.run(loose).counts.created == 20)

      // 10 of 50 gone is 20 %, over the default cap of 10 %: the run aborts and deletes nothing.
      stack.sandbox.delete(base: stack.base, table: "Contacts", ids: Array(contacts[0..<10]))
      let aborted = try await stack.run(capped, full: true)
      #expect(aborted.status == .aborted)
      #expect(aborted.error.contains("10 of 50") && aborted.error.contains("max_delete_percent 10%"), "\(aborted.error)")
      #expect(aborted.counts.softDeleted == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE status = 'archived'") == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records WHERE deleted_at IS NOT NULL") == 0)

      // Leads: 5 of 20 gone (25 %, cap 30 %) and 2 changed. The dry run reports it and changes nothing.
      stack.sandbox.delete(base: stack.base, table: "Leads", ids: Array(leads[0..<5]))
      for id in leads[5..<7] { stack.sandbox.modify(base: stack.base, table: "Leads", id: id, ["First Name": .string("Renamed")]) }
      let dry = try await stack.run(loose, dryRun: true, full: true)
      #expect(dry.status == .succeeded && dry.dryRun, "\(dry.error)")
      #expect(dry.counts.softDeleted == 5 && dry.counts.updated == 2)
      #expect(dry.planned.filter { $0.action == "soft_delete" }.count == 5)
      #expect(dry.planned.filter { $0.action == "update" }.map(\.fields) == [["first_name"], ["first_name"]])
      #expect(
        try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE status = 'archived' OR first_name = 'Renamed'") == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records WHERE deleted_at IS NOT NULL") == 0)

      let real = try await stack.run(loose, full: true)
      #expect(real.status == .succeeded, "\(real.error)")
      #expect(real.counts.softDeleted == 5 && real.counts.updated == 2)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE status = 'archived'") == 5)
      #expect(
        try await stack.count(
          "SELECT count(*)::int FROM campaign.subscribers WHERE email LIKE 'lead%' AND status = 'archived' AND email IN ('lead0@example.com','lead4@example.com')"
        ) == 2)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE first_name = 'Renamed'") == 2)
      // Archived subscribers keep their data and are sent nothing: segments count active ones only.
      #expect(try await stack.subscriber(email: "lead0@example.com")?.status == "archived")
    }
  }

  @Test func jobsAreChangedAndRemovedButNotDuringARun() async throws {
    try await SyncStack.run { stack async throws in
      stack.sandbox.insert(
        base: stack.base, table: "Contacts", (0..<1000).map { SyncStack.person($0) }, at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(mappings: Self.pullMappings)
      let started = try await stack.sync.startRun(.with { $0.jobID = job.id })
      await #expect {
        _ = try await stack.sync.updateJob(
          .with {
            $0.id = job.id
            $0.scheduleSeconds = 60
          })
      } throws: {
        rpcError($0).0 == .failedPrecondition
      }
      await #expect { _ = try await stack.sync.deleteJob(.with { $0.id = job.id }) } throws: { rpcError($0).0 == .failedPrecondition }
      #expect(try await stack.finished(started.id).status == .succeeded)

      await #expect {
        _ = try await stack.sync.updateJob(
          .with {
            $0.id = job.id
            $0.maxDeletePercent = 101
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "max_delete_percent")
      }
      await #expect {
        _ = try await stack.sync.updateJob(
          .with {
            $0.id = job.id
            $0.mappings = [SyncStack.mapping("City", "attributes.city")]
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "mappings")
      }
      let before = try await stack.sync.getJob(.with { $0.id = job.id })
      let changed = try await stack.sync.updateJob(
        .with {
          $0.id = job.id
          $0.scheduleSeconds = 3600
          $0.overlapSeconds = 5
          $0.mappings = Self.pullMappings + [SyncStack.mapping("Last Name", "last_name", .manual)]
        })
      #expect(changed.scheduleSeconds == 3600 && changed.overlapSeconds == 5 && changed.mappings.count == 5)
      #expect(changed.mappings.last?.conflictPolicy == .manual)
      #expect(changed.cursor == before.cursor && !changed.cursor.isEmpty)
      #expect(changed.name == before.name && changed.maxDeletePercent == before.maxDeletePercent)
      let withoutModified = try await stack.sync.updateJob(
        .with {
          $0.id = job.id
          $0.modifiedField = ""
        })
      #expect(withoutModified.cursor.isEmpty && withoutModified.overlapSeconds == 5)
      await #expect {
        _ = try await stack.sync.updateJob(
          .with {
            $0.id = job.id
            $0.overlapSeconds = 0
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "overlap_seconds")
      }

      #expect(try await stack.sync.deleteJob(.with { $0.id = job.id }).deleted)
      await #expect { _ = try await stack.sync.getJob(.with { $0.id = job.id }) } throws: { rpcError($0) == (.notFound, "id") }
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records") == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.runs") == 0)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 1000)
    }
  }

  @Test func editsBetweenRunsNeitherLoseNorWipeAnything() async throws {
    try await SyncStack.run { stack async throws in
      let ids = stack.sandbox.insert(
        base: stack.base, table: "Contacts",
        (0..<10).map { SyncStack.person($0).merging(["Last Name": .string("Remote\($0)")]) { a, _ in a } },
        at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(
        direction: .both, mappings: [SyncStack.mapping("Email", "email"), SyncStack.mapping("First Name", "first_name")])
      #expect(try await stack.run(job).counts.created == 10)

      // A record the campaign service refuses is that record's error, not a deleted record.
      stack.sandbox.modify(base: stack.base, table: "Contacts", id: ids[0], ["Email": .string("a,b@example.com")])
      let refused = try await stack.run(job, full: true)
      #expect(refused.status == .succeeded && refused.counts.errors == 1 && refused.counts.softDeleted == 0, "\(refused.error)")
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers WHERE status = 'archived'") == 0)

      // A field mapped later is pulled from the table, never written over it.
      _ = try await stack.sync.updateJob(
        .with {
          $0.id = job.id
          $0.mappings = [
            SyncStack.mapping("Email", "email"), SyncStack.mapping("First Name", "first_name"), SyncStack.mapping("Last Name", "last_name"),
          ]
        })
      let added = try await stack.run(job, full: true)
      #expect(added.status == .succeeded && added.counts.pushed == 0, "\(added.error)")
      #expect(try await stack.subscriber(email: "person3@example.com")?.lastName == "Remote3")
      #expect(stack.remote(ids[3])["Last Name"] == .string("Remote3"))

      // A record deleted and made again with the same e-mail: archived, then linked and active again.
      stack.sandbox.delete(base: stack.base, table: "Contacts", ids: [ids[1]])
      #expect(try await stack.run(job, full: true).counts.softDeleted == 1)
      #expect(try await stack.subscriber(email: "person1@example.com")?.status == "archived")
      let again = stack.sandbox.insert(base: stack.base, table: "Contacts", [SyncStack.person(1)])
      let revived = try await stack.run(job)
      // (Record 0 keeps its error until someone corrects its e-mail.)
      #expect(revived.status == .succeeded && revived.counts.created == 0, "\(revived.error)")
      #expect(revived.errors.map(\.recordID) == [ids[0]])
      #expect(try await stack.subscriber(email: "person1@example.com")?.status == "active")
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records WHERE record_id = '\(again[0])' AND deleted_at IS NULL") == 1)
    }
  }

  /// A CRM table's WhatsApp number and opt-in come in as the subscriber's WhatsApp contact and
  /// consent (recorded with the job as its source), and a consent withdrawn in Herald goes back.
  @Test func whatsAppNumbersAndTheirConsentSyncBothWays() async throws {
    try await SyncStack.run { stack async throws in
      stack.sandbox.addTable(
        base: stack.base, name: "Shoppers",
        fields: [("Email", .email), ("WhatsApp", .phoneNumber), ("WhatsApp OK", .checkbox), ("Last Modified", .lastModifiedTime)])
      let ids = stack.sandbox.insert(
        base: stack.base, table: "Shoppers",
        [
          ["Email": .string("wa1@example.com"), "WhatsApp": .string("+49 151 1234 5678"), "WhatsApp OK": .bool(true)],
          ["Email": .string("wa2@example.com"), "WhatsApp": .string("+4915187654321")],
        ], at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(
        table: "Shoppers", direction: .both,
        mappings: [
          SyncStack.mapping("Email", "email"), SyncStack.mapping("WhatsApp", "whatsapp"),
          SyncStack.mapping("WhatsApp OK", "whatsapp_subscribed"),
        ])
      let first = try await stack.run(job)
      #expect(first.status == .succeeded && first.counts.created == 2, "\(first.error) \(first.errors)")
      let one = try #require(try await stack.subscriber(email: "wa1@example.com"))
      #expect(one.whatsapp == "+4915112345678" && one.whatsappConsent.subscribed)
      #expect(one.whatsappConsent.source.hasPrefix("sync:"))
      let two = try #require(try await stack.subscriber(email: "wa2@example.com"))
      #expect(two.whatsapp == "+4915187654321" && !two.whatsappConsent.subscribed)

      // Withdrawn in Herald (say, a STOP on WhatsApp): the checkbox is cleared in the table.
      _ = try await stack.campaign.unsubscribe(
        .with {
          $0.id = one.id
          $0.channel = .whatsapp
        })
      let second = try await stack.run(job)
      #expect(second.status == .succeeded && second.counts.pushed == 1, "\(second.error)")
      // (Airtable leaves an unticked checkbox out of the record.)
      let record = try #require(stack.sandbox.records(base: stack.base, table: "Shoppers").first { $0.id == ids[0] })
      #expect((record.fields["WhatsApp OK"] ?? .bool(false)) == .bool(false))
      #expect(record.fields["WhatsApp"] == .string("+49 151 1234 5678"))
    }
  }

  @Test func aScheduledJobRunsByItself() async throws {
    try await SyncStack.run(scheduler: true, configure: { $0.schedulerInterval = .milliseconds(200) }) { stack async throws in
      let ids = stack.sandbox.insert(base: stack.base, table: "Contacts", [SyncStack.person(1)], at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(mappings: Self.pullMappings) { $0.scheduleSeconds = 1 }
      try await eventually(timeout: .seconds(20), "the first scheduled run") {
        try await stack.sync.listRuns(.with { $0.jobID = job.id }).runs.contains { $0.status == .succeeded }
      }
      stack.sandbox.modify(base: stack.base, table: "Contacts", id: ids[0], ["First Name": .string("Scheduled")])
      try await eventually(timeout: .seconds(20), "a later run to take the change") {
        try await stack.subscriber(email: "person1@example.com")?.firstName == "Scheduled"
      }
      let runs = try await stack.sync.listRuns(.with { $0.jobID = job.id }).runs
      #expect(runs.count >= 2)
      #expect(runs.allSatisfy { $0.status == .succeeded || $0.status == .running })
    }
  }

  @Test func aRunChecksTheMappingAgainstTheTableAndNamesWhatIsWrong() async throws {
    try await SyncStack.run { stack async throws in
      for table in ["Leads", "Partners", "Others"] { stack.sandbox.addTable(base: stack.base, name: table, fields: SyncStack.fields) }
      stack.sandbox.insert(base: stack.base, table: "Contacts", [SyncStack.person(1)])
      let job = try await stack.createJob(mappings: [SyncStack.mapping("Email", "email"), SyncStack.mapping("Nickname", "first_name")])
      let run = try await stack.run(job)
      #expect(run.status == .aborted)
      #expect(run.error.contains("mappings[1].external_field 'Nickname' is not a field of table Contacts"), "\(run.error)")
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 0)

      let checkbox = try await stack.createJob(
        table: "Leads", mappings: [SyncStack.mapping("Email", "email"), SyncStack.mapping("City", "email_subscribed")])
      let wrongType = try await stack.run(checkbox)
      #expect(
        wrongType.status == .aborted && wrongType.error.contains("email_subscribed needs a checkbox field, 'City' is singleLineText"),
        "\(wrongType.error)")

      let noToken = try await stack.createJob(table: "Partners", mappings: [SyncStack.mapping("Email", "email")]) {
        $0.tokenEnv = "MISSING_TOKEN"
      }
      let missing = try await stack.run(noToken)
      #expect(missing.status == .aborted && missing.error.contains("MISSING_TOKEN"), "\(missing.error)")

      // A record that cannot be a subscriber is that record's error; the others are synced.
      stack.sandbox.insert(base: stack.base, table: "Others", [SyncStack.person(7), ["First Name": .string("No contact")]])
      let good = try await stack.createJob(
        table: "Others", mappings: [SyncStack.mapping("Email", "email"), SyncStack.mapping("First Name", "first_name")])
      let partial = try await stack.run(good)
      #expect(partial.status == .succeeded, "\(partial.error)")
      #expect(partial.counts.created == 1 && partial.counts.errors == 1)
      #expect(partial.errors.first?.field == "email" && partial.errors.first?.message.contains("neither an email nor a phone") == true)
    }
  }

  @Test func aRecordHoldingANULCharacterIsThatRecordsErrorAndTheOthersAreSynced() async throws {
    try await SyncStack.run { stack async throws in
      let ids = stack.sandbox.insert(
        base: stack.base, table: "Contacts",
        [
          SyncStack.person(1), ["Email": .string("nul@example.com"), "First Name": .string("Ada\u{0}Lovelace")],
          SyncStack.person(2), ["Email": .string("city@example.com"), "City": .string("Lon\u{0}don")],
        ], at: Date().addingTimeInterval(-3600))
      let job = try await stack.createJob(mappings: Self.pullMappings)
      let run = try await stack.run(job)
      #expect(run.status == .succeeded, "\(run.error)")
      #expect(run.counts.recordsRead == 4 && run.counts.created == 2 && run.counts.errors == 2, "\(run.counts)")
      let errors = Dictionary(uniqueKeysWithValues: run.errors.map { ($0.recordID, $0) })
      #expect(errors.keys.sorted() == [ids[1], ids[3]].sorted())
      #expect(errors[ids[1]]?.field == "first_name" && errors[ids[1]]?.message.contains("'First Name' holds a NUL character") == true)
      #expect(errors[ids[3]]?.field == "attributes.city" && errors[ids[3]]?.message.contains("'City' holds a NUL character") == true)
      // Nothing of those records is stored: no subscriber, no link; the others are.
      #expect(try await stack.subscriber(email: "nul@example.com") == nil)
      #expect(try await stack.subscriber(email: "city@example.com") == nil)
      #expect(try await stack.count("SELECT count(*)::int FROM campaign.subscribers") == 2)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records WHERE record_id IN ('\(ids[0])', '\(ids[2])')") == 2)
      #expect(try await stack.count("SELECT count(*)::int FROM sync.records") == 2)

      // Corrected in the table, the record is synced by the next run; the other is still refused.
      stack.sandbox.modify(base: stack.base, table: "Contacts", id: ids[1], ["First Name": .string("Ada")])
      let next = try await stack.run(job)
      #expect(next.status == .succeeded && next.counts.created == 1 && next.counts.errors == 1, "\(next.counts) \(next.error)")
      #expect(try await stack.subscriber(email: "nul@example.com")?.firstName == "Ada")
      #expect(next.errors.map(\.recordID) == [ids[3]])
    }
  }

  /// A run still going when the service stops ends as interrupted (resumable) and the stop does
  /// not wait for the whole run: between two pages, or cancelled mid-page once the grace period
  /// is over (here none).
  @Test func aStoppingServiceInterruptsItsRunsPromptly() async throws {
    for grace in [Duration.seconds(15), .zero] {
      let clock = ContinuousClock()
      let (url, runID, stopping) = try await SyncStack.run(configure: { $0.stopGrace = grace }) { stack async throws in
        let old = Date().addingTimeInterval(-3600)
        for chunk in 0..<20 {
          stack.sandbox.insert(
            base: stack.base, table: "Contacts", (chunk * 100..<chunk * 100 + 100).map { SyncStack.person($0) },
            at: old.addingTimeInterval(Double(chunk)))
        }
        let job = try await stack.createJob(mappings: Self.pullMappings)
        let started = try await stack.sync.startRun(.with { $0.jobID = job.id })
        try await eventually(timeout: .seconds(120), "a page to be applied") {
          try await stack.sync.getRun(.with { $0.id = started.id }).counts.created >= 100
        }
        return (stack.url, started.id, clock.now)
      }
      let stopped = clock.now - stopping
      // 2,000 records take far longer than a page (and the grace period) at 5 requests/s.
      #expect(stopped < .seconds(60), "grace \(grace): the stop took \(stopped)")
      try await withDatabase(url) { database async throws in
        let rows = try await database.query(
          "SELECT status, error, (SELECT count(*)::int FROM sync.records) FROM sync.runs WHERE id = \(UUID(uuidString: runID)!)",
          logger: Logger(label: "test.sync"))
        let (status, error, linked) = try #require(try await rows.decode((String, String, Int).self).elements().first)
        #expect(status == "interrupted", "grace \(grace): \(status) \(error)")
        #expect(error.contains("the next run resumes from its checkpoint"), "\(error)")
        #expect(linked >= 100 && linked < 2000, "grace \(grace): \(linked) linked")
      }
    }
  }
}
