import GRPCCore
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle

/// The verification process (SPEC §6): checks, reports, issues, repairs and alerts.
package enum VerificationDefinition: BackEndProcess {
  package static let name = "verification"
  package static let migrations = HeraldMigrations.verification

  package static func loadSettings(_ environment: Settings) throws -> VerificationSettings {
    try VerificationSettings.load(environment)
  }

  package static func definition(settings: VerificationSettings) -> ServiceDefinition {
    make(settings: settings)
  }

  /// With the default settings and no schedule (tests); each call is a fresh process's worth of state.
  package static var definition: ServiceDefinition {
    var settings = VerificationSettings()
    settings.interval = .zero
    return make(settings: settings)
  }

  package static func make(settings: VerificationSettings) -> ServiceDefinition {
    let parts = PerProcess { resources -> (Verifier, RepairDesk, PostgresClient?) in
      var health = resources.clients
      health.removeValue(forKey: "verification")
      let verifier = Verifier(client: resources.database, health: health, settings: settings, logger: resources.logger)
      let repairClient = settings.repairDatabase?.makeClient(logger: resources.logger)
      return (
        verifier, RepairDesk(store: verifier.store, repairClient: repairClient, verifier: verifier, logger: resources.logger),
        repairClient
      )
    }
    return ServiceDefinition(
      name: name,
      grpcServices: [Herald_Verification_V1_VerificationService.descriptor.fullyQualifiedService],
      migrations: migrations,
      makeServices: { resources in
        let (verifier, desk, _) = parts(resources)
        return [
          VerificationService(
            checker: LedgerChecker(client: resources.database, logger: resources.logger), verifier: verifier, repairs: desk,
            store: verifier.store)
        ]
      },
      makeWorkers: { resources in
        let (verifier, _, repairClient) = parts(resources)
        var workers = [BackgroundWorker(name: "verification-schedule") { await verifier.runSchedule() }]
        if let repairClient {
          workers.append(BackgroundWorker(name: "repair-database") { await cancelWhenGracefulShutdown { await repairClient.run() } })
        }
        return workers
      },
      prepare: { resources in
        // Scratch schemas of a verification that crashed half-way.
        try await store(resources).dropScratchSchemas()
      },
      collectMetrics: { resources, scrape in
        try await collectMetrics(store(resources), into: scrape)
      })
  }

  static func store(_ resources: ServiceResources) -> VerificationStore {
    VerificationStore(client: resources.database, logger: resources.logger)
  }

  /// The figures read at each scrape: open issues by severity, across replicas (from the
  /// database). (Runs and repairs are counters where they happen, in `Verifier` and `RepairDesk`.)
  static func collectMetrics(_ store: VerificationStore, into scrape: MetricsScrape) async throws {
    let open = try await store.openIssuesBySeverity()
    for severity in Finding.Severity.allCases {
      scrape.gauge(
        "herald_verification_issues", [("severity", severity.rawValue.lowercased())], help: "Open verification issues by severity",
        Int64(open[severity] ?? 0))
    }
  }
}
