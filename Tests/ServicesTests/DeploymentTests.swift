import Foundation
import HeraldCore
import HeraldDelivery
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldSync
import HeraldTestSupport
import HeraldVerification
import Logging
import PostgresNIO
import Testing

/// What the container image and the Kubernetes manifests rely on (deploy/): the `probe` and
/// `migrate` commands of the real executables, the liveness name of Health, and the per-service
/// database roles of deploy/postgres/roles.sql.
@Suite(.timeLimit(.minutes(3))) struct DeploymentTests {
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  @Test func commandsAreParsedWithErrorsNamingTheArgument() throws {
    #expect(try ProcessCommand.parse([]) == .serve)
    #expect(try ProcessCommand.parse(["serve"]) == .serve)
    #expect(try ProcessCommand.parse(["migrate"]) == .migrate)
    #expect(try ProcessCommand.parse(["--help"]) == .help)
    #expect(try ProcessCommand.parse(["probe"]) == .probe(address: nil))
    #expect(try ProcessCommand.parse(["probe", "db.internal:7101"]) == .probe(address: ServiceAddress(host: "db.internal", port: 7101)))
    for (arguments, named) in [
      (["probe", "7101"], "'7101'"), (["probe", "a:1", "b:2"], "'a:1 b:2'"), (["migrate", "now"], "'now'"),
      (["start"], "'start'"),
    ] {
      let error = #expect(throws: ProcessCommandError.self) { try ProcessCommand.parse(arguments) }
      #expect(error?.description.contains(named) == true, "\(arguments): \(error?.description ?? "")")
    }
  }

  @Test func migrateAndProbeCommandsOfTheRealExecutable() async throws {
    let campaign = try builtExecutable("campaign")
    let url = try await TestPostgres.shared.makeDatabase(prefix: "deploy")
    let environment = ["HERALD_DATABASE_URL": url, "HERALD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"]

    let first = try await SpawnedProcess.run(campaign, ["migrate"], environment: environment)
    #expect(first.status == 0, "\(first.output)")
    #expect(
      first.output.contains("applied \(HeraldMigrations.campaign.migrations.count) migration(s) to schema campaign"), "\(first.output)")
    let again = try await SpawnedProcess.run(campaign, ["migrate"], environment: environment)
    #expect(again.status == 0 && again.output.contains("schema campaign is current"), "\(again.output)")

    let unset = try await SpawnedProcess.run(campaign, ["migrate"], environment: ["PATH": "/usr/bin:/bin"])
    #expect(unset.status == 1 && unset.output.contains("HERALD_DATABASE_URL"), "\(unset.output)")
    let bad = try await SpawnedProcess.run(campaign, ["probe", "nowhere"], environment: environment)
    #expect(bad.status == 2 && bad.output.contains("'nowhere'") && bad.output.contains("usage: campaign"), "\(bad.output)")

    // Probed: a real sync service (it needs no other service to be SERVING), by the sync executable.
    let sync = try builtExecutable("sync")
    let port = try await withRunningService(SyncDefinition.definition, databaseURL: url) { port, host async throws in
      let probe = try await SpawnedProcess.run(sync, ["probe", "127.0.0.1:\(port)"], environment: environment)
      #expect(probe.status == 0 && probe.output.contains("SERVING"), "\(probe.output)")
      // The default address is 127.0.0.1 on the process's own HERALD_PORT.
      var own = environment
      own["HERALD_PORT"] = "\(port)"
      let byPort = try await SpawnedProcess.run(sync, ["probe"], environment: own)
      #expect(byPort.status == 0, "\(byPort.output)")

      // Liveness stays SERVING while readiness drops (a lost database must not restart the pod).
      host.health.setAll(.notServing)
      let notReady = try await SpawnedProcess.run(sync, ["probe", "127.0.0.1:\(port)"], environment: environment)
      #expect(notReady.status == 1 && notReady.output.contains("NOT_SERVING"), "\(notReady.output)")
      let live = await HealthProbe.grpc(ServiceAddress(host: "127.0.0.1", port: port), service: HealthStatus.liveness)
      #expect(live.healthy, "\(live.message)")
      host.health.setAll(.serving)
      return port
    }
    let gone = try await SpawnedProcess.run(sync, ["probe", "127.0.0.1:\(port)"], environment: environment)
    #expect(gone.status == 1 && gone.output.contains("no health answer"), "\(gone.output)")

    let gateway = try builtExecutable("gateway")
    let noGateway = try await SpawnedProcess.run(gateway, ["probe", "127.0.0.1:\(port)"], environment: environment)
    #expect(noGateway.status == 1 && noGateway.output.contains("no answer to GET /health"), "\(noGateway.output)")
  }

  @Test func composeDemoProvidersFileIsValid() throws {
    let (providers, _) = try ProviderConfig.loadFile(Self.repository.appendingPathComponent("deploy/compose/providers.json").path)
    #expect(providers.map(\.name) == ["demo-smtp"])
  }

  /// The demo CRM of the compose stack, as its executable: serves the Contacts table, answers its probe.
  @Test func crmSandboxExecutableServesTheDemoTableAndAnswersItsProbe() async throws {
    let executable = try builtExecutable("crm-sandbox")
    let environment = ["CRM_SANDBOX_TOKEN": "demo-token-1234", "CRM_SANDBOX_PORT": "0", "PATH": "/usr/bin:/bin"]
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("crm-sandbox-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: log) }
    let process = try SpawnedProcess(executable, [], output: log, environment: environment)
    defer { process.kill() }
    var port: Int?
    try await eventually("crm-sandbox to say where it serves") {
      let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
      port = text.firstMatch(of: /on http:\/\/127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
      return port != nil
    }
    let address = "127.0.0.1:\(port!)"
    let probe = try await SpawnedProcess.run(executable, ["probe", address], environment: environment)
    #expect(probe.status == 0 && probe.output.contains("HTTP 200"), "\(probe.output)")
    var wrongToken = environment
    wrongToken["CRM_SANDBOX_TOKEN"] = "another-token"
    let refused = try await SpawnedProcess.run(executable, ["probe", address], environment: wrongToken)
    #expect(refused.status == 1 && refused.output.contains("HTTP 401"), "\(refused.output)")
    let unset = try await SpawnedProcess.run(executable, [], environment: ["PATH": "/usr/bin:/bin"])
    #expect(unset.status == 1 && unset.output.contains("CRM_SANDBOX_TOKEN"), "\(unset.output)")

    let client = AirtableClient(
      configuration: .init(endpoint: "http://\(address)", base: "appHeraldDemo0001", table: "Contacts", token: "demo-token-1234"))
    let fields = try await client.fields()
    #expect(fields.map(\.name) == ["Email", "First Name", "Last Name", "Phone", "Engagement", "Last Messaged", "Last Modified"])
  }

  /// Runs deploy/postgres/roles.sql as the administrator, then works as each service's role.
  @Test func databaseRolesConfineEachServiceToItsSchema() async throws {
    let adminURL = try await TestPostgres.shared.makeDatabase(prefix: "roles")
    let script = try String(contentsOf: Self.repository.appendingPathComponent("deploy/postgres/roles.sql"), encoding: .utf8)
    let password = UUID().uuidString
    let logger = Logger(label: "test.roles")

    try await withDatabase(adminURL) { admin async throws in
      // A database that ran Herald as one user before: its rate-limit schema belongs to the admin.
      try await MigrationRunner(logger: logger).migrate(HeraldMigrations.ratelimit, client: admin)
      for _ in 0..<2 {  // running it again changes nothing
        for statement in SQLScript.statements(in: script) {
          try await admin.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
      }
      for set in HeraldMigrations.all {
        try await admin.query(PostgresQuery(unsafeSQL: "ALTER ROLE herald_\(set.schema) PASSWORD '\(password)'"), logger: logger)
      }
    }

    func asRole(_ role: String) throws -> String {
      var components = URLComponents(string: adminURL)!
      components.user = role
      components.password = password
      return components.string!
    }
    /// The server's message when `sql` is refused for lack of privilege (SQLSTATE 42501).
    func refusal(_ client: PostgresClient, _ sql: String) async -> String? {
      do {
        _ = try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
        return nil
      } catch {
        return error.sqlState == "42501" ? error.postgresError?.serverInfo?[.message] : "unexpected: \(error.databaseMessage)"
      }
    }

    // Every service migrates its own schema as its own role (the admin's old schema included).
    for set in HeraldMigrations.all {
      try await withDatabase(try asRole("herald_\(set.schema)")) { client async throws in
        try await MigrationRunner(logger: logger).migrate(set, client: client)
      }
    }

    try await withDatabase(try asRole("herald_campaign")) { campaign async throws in
      try await campaign.query(
        "INSERT INTO campaign.lists (id, name) VALUES (gen_random_uuid(), 'mine')", logger: logger)
      #expect(await refusal(campaign, "SELECT count(*) FROM delivery.messages") == "permission denied for schema delivery")
      #expect(await refusal(campaign, "SELECT count(*) FROM ratelimit.limits") == "permission denied for schema ratelimit")
      #expect(await refusal(campaign, "CREATE TABLE delivery.sneaky (id int)") == "permission denied for schema delivery")
      #expect(await refusal(campaign, "CREATE TABLE public.sneaky (id int)") == "permission denied for schema public")
      #expect(await refusal(campaign, "CREATE SCHEMA sneaky")?.hasPrefix("permission denied for database") == true)
      #expect(await refusal(campaign, "ALTER ROLE herald_delivery PASSWORD 'x'") == "permission denied")
    }
    try await withDatabase(try asRole("herald_delivery")) { delivery async throws in
      #expect(await refusal(delivery, "DELETE FROM campaign.subscribers") == "permission denied for schema campaign")
      #expect(await refusal(delivery, "SELECT * FROM gateway.api_keys") == "permission denied for schema gateway")
    }
    try await withDatabase(try asRole("herald_verification")) { verification async throws in
      // Reads every schema, including tables created after roles.sql ran and the handed-over one.
      let lists = try await verification.query("SELECT count(*)::int FROM campaign.lists", logger: logger)
        .collect().first?.decode(Int.self)
      #expect(lists == 1)
      _ = try await verification.query("SELECT count(*) FROM delivery.messages", logger: logger).collect()
      _ = try await verification.query("SELECT count(*) FROM ratelimit.limits", logger: logger).collect()
      #expect(await refusal(verification, "DELETE FROM campaign.lists") == "permission denied for table lists")
      #expect(await refusal(verification, "UPDATE delivery.messages SET status = 'sent'") == "permission denied for table messages")
      #expect(await refusal(verification, "CREATE TABLE campaign.sneaky (id int)") == "permission denied for schema campaign")
      // ...and builds scratch schemas for drift checks.
      try await verification.query("CREATE SCHEMA verification_scratch_test", logger: logger)
      try await verification.query("DROP SCHEMA verification_scratch_test", logger: logger)
      // The whole verification works as this role: every check reads what it needs, nothing is refused.
      var settings = VerificationSettings()
      settings.interval = .zero
      let report = try await Verifier(client: verification, health: [:], settings: settings, logger: logger).run(component: nil)
      #expect(report.components.filter { !$0.note.isEmpty }.map { "\($0.component): \($0.note)" } == [])
      #expect(report.findings.map { "\($0.check) \($0.affectedObject)" } == [])
      #expect(report.overallStatus == "ok")
    }
  }
}
