import CRMSandbox
import Foundation
import GRPCCore
import HeraldCampaign
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import PostgresNIO
import SwiftProtobuf
import Testing

/// The real `sync` executable killed with SIGKILL in the middle of a run, then started again:
/// the next run resumes from the last checkpoint and no record becomes two subscribers; the
/// second process's metrics count the run it resumed as interrupted and its own as succeeded.
@Suite(.timeLimit(.minutes(5))) struct SyncCrashTests {
  @Test func aRunKilledMidWayIsResumedWithoutDuplicates() async throws {
    let executable = try builtExecutable("sync")
    let url = try await TestPostgres.shared.makeDatabase()
    let sandbox = CRMSandbox(token: SyncStack.token)
    let base = "app" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(14)
    sandbox.addTable(base: base, name: "Contacts", fields: SyncStack.fields)
    // 30 pages, each last modified 10 s after the one before (and the 5 requests/s pace makes
    // the listing alone take 6 s).
    let old = Date().addingTimeInterval(-3600)
    for chunk in 0..<30 {
      sandbox.insert(
        base: base, table: "Contacts", (chunk * 100..<chunk * 100 + 100).map { SyncStack.person($0) },
        at: old.addingTimeInterval(Double(chunk * 10)))
    }
    let logger = Logger(label: "test.sync-crash")
    try await withCRMSandbox(sandbox) { apiPort async throws in
      try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) {
        campaignPort, _ async throws in
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-sync-crash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let port = try freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["HERALD_DATABASE_URL"] = url
        environment["HERALD_PORT"] = String(port)
        environment["HERALD_CAMPAIGN_ADDR"] = "127.0.0.1:\(campaignPort)"
        environment["HERALD_SYNC_API_URL"] = "http://127.0.0.1:\(apiPort)"
        environment[SyncStack.tokenEnv] = SyncStack.token
        environment["HERALD_LOG_LEVEL"] = "warning"

        do {
          try await killAndResume()
        } catch {
          Issue.record("the sync processes' log:\n\((try? String(contentsOfFile: folder + "/sync.log", encoding: .utf8)) ?? "")")
          throw error
        }
        func killAndResume() async throws {
          try await withDatabase(url) { database async throws in
            func count(_ sql: String) async throws -> Int {
              try await database.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(Int.self).elements().first ?? -1
            }
            let first = try SpawnedProcess(executable, [], output: folder + "/sync.log", environment: environment)
            var killed = false
            defer { if !killed { first.kill() } }
            let (job, firstRun) = try await withClient(port: port) { client async throws in
              let sync = Herald_Sync_V1_SyncService.Client(wrapping: client)
              try await eventually(timeout: .seconds(30), "the sync service to answer") {
                (try? await sync.listJobs(.init())) != nil
              }
              let job = try await sync.createJob(
                .with {
                  $0.name = "contacts"
                  $0.baseID = base
                  $0.tableID = "Contacts"
                  $0.tokenEnv = SyncStack.tokenEnv
                  $0.direction = .pull
                  $0.mappings = SyncRunTests.pullMappings
                  $0.modifiedField = "Last Modified"
                  $0.overlapSeconds = 1
                })
              let run = try await sync.startRun(.with { $0.jobID = job.id })
              try await eventually(timeout: .seconds(60), "a third of the table to be applied") {
                try await sync.getRun(.with { $0.id = run.id }).counts.created >= 1000
              }
              return (job, run)
            }
            first.kill()
            killed = true
            let applied = try await count("SELECT count(*)::int FROM sync.records")
            #expect(applied >= 1000 && applied < 3000, "killed after \(applied) records")

            let metricsPort = try freePort()
            var secondEnvironment = environment
            secondEnvironment["HERALD_METRICS_PORT"] = String(metricsPort)
            let second = try SpawnedProcess(executable, [], output: folder + "/sync.log", environment: secondEnvironment)
            defer { second.kill() }
            try await withClient(port: port) { client async throws in
              let sync = Herald_Sync_V1_SyncService.Client(wrapping: client)
              try await eventually(timeout: .seconds(30), "the sync service to answer again") {
                (try? await sync.listJobs(.init())) != nil
              }
              let resumed = try await sync.startRun(.with { $0.jobID = job.id })
              #expect(resumed.resumedFrom == firstRun.id)
              var run = resumed
              try await eventually(timeout: .seconds(120), "the resumed run to end") {
                run = try await sync.getRun(.with { $0.id = resumed.id })
                return run.status != .running
              }
              #expect(run.status == .succeeded, "\(run.error)")
              // It read from the checkpoint on, not the whole table again.
              #expect(run.counts.recordsRead <= 3000 - 900, "read \(run.counts.recordsRead)")
              let interrupted = try await sync.getRun(.with { $0.id = firstRun.id })
              #expect(interrupted.status == .interrupted)
              #expect(interrupted.counts.created + run.counts.created <= 3000)

              let figures = try await scrapeMetrics(port: metricsPort, prefix: "herald_sync_")
              #expect(figures[#"herald_sync_runs_total{status="interrupted"}"#] == 1, "\(figures)")
              #expect(figures[#"herald_sync_runs_total{status="succeeded"}"#] == 1, "\(figures)")
              #expect(figures[#"herald_sync_records_total{outcome="created"}"#] == Double(run.counts.created), "\(figures)")
              #expect(figures["herald_sync_runs_running"] == 0 && figures["herald_sync_conflicts_pending"] == 0, "\(figures)")
            }
            #expect(try await count("SELECT count(*)::int FROM campaign.subscribers") == 3000)
            #expect(try await count("SELECT count(DISTINCT email)::int FROM campaign.subscribers") == 3000)
            #expect(try await count("SELECT count(*)::int FROM sync.records") == 3000)
            #expect(try await count("SELECT count(DISTINCT subscriber_id)::int FROM sync.records") == 3000)
          }
        }
      }
    }
  }
}
