import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
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

typealias VerificationClient = Herald_Verification_V1_VerificationService.Client<HTTP2ClientTransport.Posix>

extension VerificationClient {
  /// A whole run applies every migration into scratch schemas and checks every table: on a
  /// loaded 2-core machine it may take longer than a client's default 10 s (the gateway allows
  /// 300 s for the route).
  func runVerificationAllowingForLoad(
    _ request: Herald_Verification_V1_RunVerificationRequest
  ) async throws -> Herald_Verification_V1_VerificationReport {
    try await runVerification(request, options: .timeout(.seconds(180)))
  }
}

/// Every back-end running in-process on one database, and the verification service checking
/// them (its repairs through the test's own role). `syncDown`: the sync service is stopped (its
/// schema is there, nothing answers at its address).
func withVerifiedSystem<T: Sendable>(
  syncDown: Bool = false, alertWebhook: String? = nil, configure: (inout VerificationSettings) -> Void = { _ in },
  _ body: (_ verification: VerificationClient, _ database: PostgresClient, _ url: String) async throws -> T
) async throws -> T {
  let url = try await TestPostgres.shared.makeDatabase()
  func local(_ port: Int) -> ServiceAddress { ServiceAddress(host: "127.0.0.1", port: port) }
  return try await withRunningService(withoutReadinessDependencies(RateLimitDefinition.definition), databaseURL: url) {
    ratelimit, _ async throws in
    try await withRunningService(withoutReadinessDependencies(DeliveryDefinition.definition), databaseURL: url) {
      delivery, _ async throws in
      try await withRunningService(withoutReadinessDependencies(CampaignDefinition.definition), databaseURL: url) {
        campaign, _ async throws in
        try await withRunningService(
          withoutReadinessDependencies(SyncDefinition.definition), databaseURL: url, dependencies: ["campaign": local(campaign)]
        ) { syncPort, _ async throws in
          var settings = VerificationSettings()
          settings.interval = .zero
          settings.stuckAfter = .seconds(60)
          settings.repairDatabase = try DatabaseConfiguration(url: url, poolSize: 2)
          settings.alertWebhook = alertWebhook
          configure(&settings)
          var definition = VerificationDefinition.make(settings: settings)
          definition.readinessDependencies = []
          let dependencies = [
            "campaign": local(campaign), "delivery": local(delivery), "ratelimit": local(ratelimit),
            "sync": syncDown ? local(try freePort()) : local(syncPort),
          ]
          // The gateway is no gRPC service: its schema is made as it would make it.
          try await withDatabase(url) { database async throws in
            try await MigrationRunner(logger: Logger(label: "test.verification")).migrate(HeraldMigrations.gateway, client: database)
          }
          return try await withRunningService(definition, databaseURL: url, dependencies: dependencies) { port, _ async throws in
            try await withClient(port: port) { client async throws in
              try await withDatabase(url) { database async throws in
                try await body(VerificationClient(wrapping: client), database, url)
              }
            }
          }
        }
      }
    }
  }
}

@Suite(.timeLimit(.minutes(5))) struct VerificationTests {
  static let logger = Logger(label: "test.verification")

  /// Runs statements one by one (the extended protocol takes one at a time), split at `;` + newline.
  static func sql(_ database: PostgresClient, _ text: String) async throws {
    for statement in text.components(separatedBy: ";\n") where !statement.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      do {
        try await database.query(PostgresQuery(unsafeSQL: statement), logger: logger)
      } catch {
        throw TestSetupError("\(statement): \(error.databaseMessage)")
      }
    }
  }

  static func count(_ database: PostgresClient, _ text: String) async throws -> Int {
    try await database.query(PostgresQuery(unsafeSQL: text), logger: logger).decode(Int.self).elements().first ?? -1
  }

  @Test func aHealthySystemVerifiesClean() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.subscribers (email, email_subscribed, email_consent_source, email_consented_at)
        VALUES ('ada@example.com', true, 'signup', now()), ('grace@example.com', false, NULL, NULL)
        """)
      let report = try await verification.runVerificationAllowingForLoad(.init())
      #expect(report.issues.map { "\($0.check) \($0.affectedObject): \($0.description_p)" } == [])
      #expect(report.overallStatus == .ok)
      let names = Set(report.components.map(\.component))
      for schema in HeraldMigrations.all.map(\.schema) {
        #expect(names.contains("schema:\(schema)") && names.contains("ledger:\(schema)"))
      }
      #expect(names.isSuperset(of: ["data", "sync", "health"]))
      #expect(report.components.allSatisfy { $0.note.isEmpty && $0.status == .ok })
      #expect(report.summary.hasPrefix("OK: 0 issues"))
      let latest = try await verification.getReport(.with { $0.id = "latest" })
      #expect(latest.id == report.id)
      // No scratch schema is left behind.
      #expect(try await Self.count(database, "SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'verify\\_%'") == 0)
      await #expect { _ = try await verification.runVerificationAllowingForLoad(.with { $0.component = "everything" }) } throws: {
        rpcError($0) == (.invalidArgument, "component")
      }
      await #expect {
        _ = try await verification.runVerificationAllowingForLoad(
          .with {
            $0.component = "schema"
            $0.schemas = ["public"]
          })
      } throws: {
        rpcError($0) == (.invalidArgument, "schemas")
      }
    }
  }

  /// SPEC §6: campaign counters equal the delivery ledger's totals, for the events the campaign
  /// service's feed has taken in (a lagging feed is no mismatch).
  @Test func campaignCountersAreComparedWithTheDeliveryLedger() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.lists (name) VALUES ('everyone');
        INSERT INTO campaign.campaigns (name, channel, list_id, status) SELECT 'news', 'email', id, 'sent' FROM campaign.lists;
        WITH m AS (
          INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, campaign_id)
          SELECT 'news:' || g, 'email', 'user' || g || '@example.com', 'hi', (SELECT id FROM campaign.campaigns)
          FROM generate_series(1, 3) g RETURNING id)
        INSERT INTO delivery.delivery_events (message_id, status) SELECT id, 'queued' FROM m;
        INSERT INTO delivery.delivery_events (message_id, status, cost_cents) SELECT id, 'sent', 2 FROM delivery.messages;
        """)
      // The feed has taken in all but the last event: 3 queued, 2 sent at 2 cents each.
      try await Self.sql(
        database,
        """
        UPDATE campaign.delivery_feed SET cursor = (
          SELECT txid::text || '.' || id FROM delivery.delivery_events ORDER BY txid DESC, id DESC OFFSET 1 LIMIT 1);
        INSERT INTO campaign.campaign_daily_stats (campaign_id, variant, day, status, events, cost_cents)
        SELECT id, 'default', current_date, 'queued', 3, 0 FROM campaign.campaigns
        UNION ALL SELECT id, 'default', current_date, 'sent', 2, 4 FROM campaign.campaigns;
        """)
      let clean = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      #expect(clean.issues.map { "\($0.check): \($0.sampleKeys)" } == [])

      try await Self.sql(database, "UPDATE campaign.campaign_daily_stats SET events = 3, cost_cents = 6 WHERE status = 'sent'")
      let report = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      let mismatch = try #require(report.issues.first { $0.check == "data.campaign_counters_mismatch" })
      #expect(mismatch.severity == .high && mismatch.count == 1 && mismatch.affectedObject == "campaign.campaign_daily_stats")
      #expect(mismatch.sampleKeys.first?.hasSuffix(" sent: counted 3 (cost 6), delivery has 2 (cost 4)") == true, "\(mismatch.sampleKeys)")
    }
  }

  @Test func aMigrationInProgressIsNotReportedAsDrift() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(database, "CREATE INDEX half_done_idx ON campaign.subscribers (last_name)")
      // A deploy holds the schema's migration lock while it changes the schema.
      try await database.withConnection { connection in
        let key = MigrationRunner.lockKey(schema: "campaign")
        try await connection.query("SELECT pg_advisory_lock(hashtext(\(key)))", logger: Self.logger)
        let during = try await verification.runVerificationAllowingForLoad(
          .with {
            $0.component = "schema"
            $0.schemas = ["campaign"]
          })
        try await connection.query("SELECT pg_advisory_unlock(hashtext(\(key)))", logger: Self.logger)
        #expect(during.issues.isEmpty)
        #expect(during.overallStatus == .warning)
        #expect(during.components.first?.note == "a migration of campaign is in progress: drift not checked")
      }
      let after = try await verification.runVerificationAllowingForLoad(
        .with {
          $0.component = "schema"
          $0.schemas = ["campaign"]
        })
      #expect(after.issues.map(\.check) == ["schema.extra_index"])
      #expect(after.issues.first?.affectedObject == "campaign.half_done_idx")
    }
  }

  @Test func verificationsRunOnASchedule() async throws {
    try await withVerifiedSystem(configure: { $0.interval = .milliseconds(300) }) { verification, database, _ async throws in
      try await eventually(timeout: .seconds(30), "three scheduled reports") {
        try await Self.count(database, "SELECT count(*)::int FROM verification.reports WHERE kind = 'full'") >= 3
      }
      let reports = try await verification.listReports(.with { $0.pageSize = 2 }).reports
      #expect(reports.count == 2 && reports.allSatisfy { $0.kind == "full" && $0.overallStatus == .ok && $0.issues.isEmpty })
      #expect(reports[0].startedAt.date > reports[1].startedAt.date)
    }
  }

  /// SPEC §11's checks: a text queued to a number that texted STOP (repaired: suppressed), an
  /// auto-response without its inbound message, an inbound message not linked to the subscriber
  /// with its sender's number (repaired: linked).
  @Test func inboundFaultsAreFoundAndRepaired() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.subscribers (phone, sms_subscribed, created_at) VALUES ('+14155550101', false, now() - interval '1 hour');
        -- Subscribed after its sender's message came in: no link expected.
        INSERT INTO campaign.subscribers (phone) VALUES ('+14155550199');
        INSERT INTO delivery.suppressions (address, reason) VALUES ('+14155550101', 'sms_keyword');
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body) VALUES
          ('after-stop', 'sms', '+14155550101', 'Sale!'), ('confirmation', 'sms', '+14155550101', 'Bye');
        UPDATE delivery.messages SET compliance = true WHERE idempotency_key = 'confirmation';
        INSERT INTO delivery.inbound_messages (provider, provider_message_id, channel, sender, recipient, body, action, received_at)
          VALUES ('sms-main', 'SM1', 'sms', '+14155550101', '+15550001111', 'STOP', 'stop', now() - interval '5 minutes'),
            ('sms-main', 'SM2', 'sms', '+14155550199', '+15550001111', 'hi', 'none', now() - interval '5 minutes');
        INSERT INTO campaign.auto_response_rules (name, channel, trigger, body, cooldown_seconds, daily_cap)
          VALUES ('hi', 'sms', 'any', 'Hello', 60, 10);
        INSERT INTO campaign.auto_responses (rule_id, inbound_id, recipient, status)
          SELECT id, gen_random_uuid(), '+14155550199', 'queued' FROM campaign.auto_response_rules
        """)
      let report = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      func issue(_ check: String) -> Herald_Verification_V1_Issue? { report.issues.first { $0.check == check } }
      let queued = try #require(issue("data.sms_queued_after_stop"), "\(report.issues.map(\.check))")
      #expect(queued.count == 1 && queued.severity == .critical && queued.autoRepairable)
      #expect(issue("data.orphan_auto_response")?.count == 1)
      let unlinked = try #require(issue("data.inbound_without_subscriber"))
      #expect(unlinked.count == 1)
      for found in [queued, unlinked] {
        let plan = try await verification.proposeRepair(.with { $0.fingerprint = found.fingerprint })
        let run = try await verification.runRepair(
          .with {
            $0.id = plan.id
            $0.apply = true
          })
        #expect(run.status == .applied, "\(found.check): \(run.runs.last?.error ?? "")")
      }
      #expect(
        try await Self.count(
          database, "SELECT count(*)::int FROM delivery.messages WHERE status = 'suppressed' AND idempotency_key = 'after-stop'")
          == 1)
      #expect(try await Self.count(database, "SELECT count(*)::int FROM delivery.messages WHERE status = 'queued'") == 1)
      #expect(try await Self.count(database, "SELECT count(*)::int FROM delivery.inbound_messages WHERE subscriber_id IS NOT NULL") == 1)
      let again = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      #expect(Set(again.issues.map(\.check)) == ["data.orphan_auto_response"])
    }
  }

  /// SPEC §13: snapshots above the live counters, conversions crediting a missing variant, and an
  /// A/B test's rest written outside its decision (or a recipient sent twice).
  @Test func resultsFaultsAreFound() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.subscribers (email) VALUES ('ada@example.com'), ('lin@example.com');
        INSERT INTO campaign.lists (name) VALUES ('all');
        INSERT INTO campaign.templates (name, channel, format, subject, body, variables)
          VALUES ('t', 'email', 'text', 'Hi', 'Hi', '[]');
        INSERT INTO campaign.campaigns (name, channel, list_id, status)
          SELECT 'tested', 'email', id, 'sending' FROM campaign.lists;
        INSERT INTO campaign.campaign_variants (campaign_id, position, name, template_id, weight)
          SELECT c.id, p, n, t.id, 1 FROM campaign.campaigns c, campaign.templates t, (VALUES (0, 'A'), (1, 'B')) v(p, n);
        INSERT INTO campaign.campaign_daily_stats (campaign_id, variant, day, status, events)
          SELECT id, 'A', current_date, 'sent', 3 FROM campaign.campaigns;
        -- The live counters say 3 sent; a snapshot says 5.
        INSERT INTO campaign.metric_snapshots (campaign_id, variant, taken_at, resolution, audience, recipients, queued, sent,
          delivered, bounced, soft_bounced, failed, opened, unique_opened, clicked, unique_clicked, replied, unsubscribed,
          complained, cost_cents, conversions, revenue_cents)
          SELECT id, v, now(), '5m', 2, 2, 0, s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
          FROM campaign.campaigns, (VALUES ('A', 3), ('', 5)) x(v, s);
        INSERT INTO campaign.conversions (idempotency_key, subscriber_id, campaign_id, variant, attribution, value_cents, currency, occurred_at)
          SELECT 'order-1', s.id, c.id, 'Z', 'given', 100, 'USD', now() FROM campaign.subscribers s, campaign.campaigns c
          WHERE s.email = 'ada@example.com';
        -- Undecided, yet a rest entry; and two messages to one recipient.
        INSERT INTO campaign.ab_tests (campaign_id, test_basis_points, wait_seconds, metric, confidence_basis_points, fallback)
          SELECT id, 2000, 3600, 'open', 9500, 'control' FROM campaign.campaigns;
        INSERT INTO campaign.outbox (campaign_id, subscriber_id, variant, wave)
          SELECT c.id, s.id, 'B', 1 FROM campaign.campaigns c, campaign.subscribers s WHERE s.email = 'lin@example.com';
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, campaign_id, subscriber_id)
          SELECT k, 'email', 'ada@example.com', 'hi', c.id, s.id
          FROM campaign.campaigns c, campaign.subscribers s, (VALUES ('twice:1'), ('twice:2')) x(k) WHERE s.email = 'ada@example.com';
        """)
      let report = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      func issue(_ check: String) -> Herald_Verification_V1_Issue? { report.issues.first { $0.check == check } }
      let snapshot = try #require(issue("data.snapshot_above_live"), "\(report.issues.map(\.check))")
      #expect(snapshot.count == 1 && snapshot.sampleKeys[0].contains("(whole campaign)"))
      #expect(issue("data.conversion_variant_missing")?.count == 1)
      let rest = try #require(issue("data.ab_rest_outside_decision"))
      #expect(rest.count == 2 && rest.severity == .critical, "\(rest.sampleKeys)")
      // Decided for B, the rest entry is the decision's; the second message is still found.
      try await Self.sql(
        database,
        """
        UPDATE campaign.ab_tests SET decided_at = now(), outcome = 'winner', winner = 'B';
        DELETE FROM delivery.messages WHERE idempotency_key = 'twice:2';
        UPDATE campaign.metric_snapshots SET sent = 3;
        UPDATE campaign.conversions SET variant = 'A';
        """)
      let again = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      let left = Set(again.issues.map(\.check))
      #expect(
        left.isDisjoint(with: ["data.snapshot_above_live", "data.conversion_variant_missing", "data.ab_rest_outside_decision"]), "\(left)")
    }
  }

  @Test func journeyFaultsAreFound() async throws {
    try await withVerifiedSystem { verification, database, _ async throws in
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.subscribers (email) VALUES ('ada@example.com'), ('lin@example.com');
        INSERT INTO campaign.journeys (name, status, definition, version) VALUES ('welcome', 'active', '{}', 2);
        INSERT INTO campaign.journey_versions (journey_id, version, definition, trigger_event, listens)
          SELECT id, v, '{"steps": [{"id": "hello", "kind": "send"}, {"id": "wait", "kind": "wait"}]}', 'signed_up', '{signed_up}'
          FROM campaign.journeys, (VALUES (1), (2)) x(v);
        -- Ada waits on a step her version does not have; Lin was due an hour ago.
        INSERT INTO campaign.journey_enrolments (journey_id, version, subscriber_id, status, step, due_at, entered_at)
          SELECT j.id, 1, s.id, 'active', CASE s.email WHEN 'ada@example.com' THEN 'gone' ELSE 'wait' END,
            CASE s.email WHEN 'ada@example.com' THEN now() + interval '1 day' ELSE now() - interval '1 hour' END, now()
          FROM campaign.journeys j, campaign.subscribers s;
        -- Ada's hello was recorded an hour ago and never relayed.
        INSERT INTO campaign.journey_steps_done (enrolment_id, step, version, kind, outcome, done_at)
          SELECT e.id, 'hello', 1, 'send', 'pending', now() - interval '1 hour'
          FROM campaign.journey_enrolments e JOIN campaign.subscribers s ON s.id = e.subscriber_id AND s.email = 'ada@example.com';
        -- Lin's hello step sent under version 1 and again under version 2.
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, subscriber_id)
          SELECT 'journey:' || j.id || ':' || v || ':hello:' || e.id, 'email', 'lin@example.com', 'hi', e.subscriber_id
          FROM campaign.journeys j JOIN campaign.journey_enrolments e ON e.journey_id = j.id
            JOIN campaign.subscribers s ON s.id = e.subscriber_id AND s.email = 'lin@example.com', (VALUES (1), (2)) x(v);
        """)
      let report = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      func issue(_ check: String) -> Herald_Verification_V1_Issue? { report.issues.first { $0.check == check } }
      let missing = try #require(issue("data.journey_step_missing"), "\(report.issues.map(\.check))")
      #expect(missing.count == 1 && missing.sampleKeys.first?.isEmpty == false)
      let repeated = try #require(issue("data.journey_send_repeated"))
      #expect(repeated.count == 1 && repeated.severity == .critical)
      #expect(issue("data.journey_enrolment_overdue")?.count == 2)
      try await Self.sql(
        database,
        """
        UPDATE campaign.journey_enrolments SET step = 'wait', due_at = now() + interval '1 day';
        UPDATE campaign.journey_steps_done SET outcome = 'sent';
        DELETE FROM delivery.messages WHERE idempotency_key LIKE 'journey:%:2:hello:%';
        """)
      let again = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      let left = Set(again.issues.map(\.check))
      #expect(
        left.isDisjoint(with: ["data.journey_step_missing", "data.journey_send_repeated", "data.journey_enrolment_overdue"]), "\(left)")

      // A campaign's push queued to a token retired an hour before; and a text queued to a
      // number that wrote STOP on WhatsApp, which is no SMS opt-out.
      try await Self.sql(
        database,
        """
        INSERT INTO campaign.push_tokens (subscriber_id, platform, token, retired_at, retired_reason)
          SELECT id, 'apns', repeat('ab', 32), now() - interval '1 hour', 'unregistered' FROM campaign.subscribers
          WHERE email = 'ada@example.com';
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, campaign_id, payload)
          VALUES ('c:ada', 'push', repeat('ab', 32), 'hi', gen_random_uuid(), '{"push": {"platform": "apns"}}');
        INSERT INTO delivery.suppressions (address, reason, detail) VALUES ('whatsapp:+4915112345678', 'sms_keyword', 'wrote STOP');
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body) VALUES ('t:1', 'sms', '+4915112345678', 'hi');
        """)
      let third = try await verification.runVerificationAllowingForLoad(.with { $0.component = "data" })
      let reused = try #require(third.issues.first { $0.check == "data.push_token_reused" }, "\(third.issues.map(\.check))")
      #expect(reused.count == 1 && reused.severity == .critical)
      #expect(!third.issues.contains { $0.check == "data.sms_queued_after_stop" || $0.check == "data.queued_to_suppressed" })
    }
  }

  @Test func injectedFaultsAreFoundRepairedAndAFailedRepairIsRolledBack() async throws {
    try await withHTTPSink { webhookPort, alerts async throws in
      try await withVerifiedSystem(syncDown: true, alertWebhook: "http://127.0.0.1:\(webhookPort)/alerts") {
        verification, database, _ async throws in
        // Data first (while the constraints still hold), then the faults.
        try await Self.sql(
          database,
          """
          INSERT INTO campaign.subscribers (email) VALUES ('ada@example.com'), ('grace@example.com');
          INSERT INTO campaign.lists (name) VALUES ('newsletter');
          INSERT INTO campaign.list_members (list_id, subscriber_id) SELECT l.id, s.id FROM campaign.lists l, campaign.subscribers s;
          """)
        try await Self.sql(
          database,
          """
          ALTER TABLE campaign.campaign_variants DROP COLUMN campaign_id;
          ALTER TABLE campaign.list_members DROP CONSTRAINT list_members_subscriber_id_fkey;
          CREATE INDEX extra_first_name_idx ON campaign.subscribers (first_name);
          UPDATE ratelimit.schema_migrations SET checksum = repeat('deadbeef', 8) WHERE version = 1;
          INSERT INTO campaign.list_members (list_id, subscriber_id) SELECT id, gen_random_uuid() FROM campaign.lists;
          WITH m AS (
            INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, campaign_id)
            VALUES ('orphan:1', 'email', 'someone@example.com', 'hi', gen_random_uuid()) RETURNING id)
          INSERT INTO delivery.delivery_events (message_id, status) SELECT id, 'queued' FROM m;
          INSERT INTO delivery.delivery_events (message_id, status) VALUES (gen_random_uuid(), 'sent');
          INSERT INTO campaign.outbox (campaign_id, subscriber_id, variant) VALUES (gen_random_uuid(), gen_random_uuid(), 'A');
          INSERT INTO campaign.subscribers (email) VALUES ('not-an-email'), ('ada@example.com ');
          INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, status, attempts, lease_token, lease_expires_at)
            VALUES ('stuck:1', 'email', 'lin@example.com', 'hi', 'sending', 1, gen_random_uuid(), now() - interval '1 hour'),
              ('stuck:2', 'email', 'mo@example.com', 'hi', 'sending', 1, gen_random_uuid(), now() - interval '1 hour');
          -- stuck:2's send began (its worker recorded it in the send journal); stuck:1's never did.
          INSERT INTO delivery.send_journal (lease_token, message_ids, resendable)
            SELECT lease_token, ARRAY[id], '{}' FROM delivery.messages WHERE idempotency_key = 'stuck:2';
          """)
        let report = try await verification.runVerificationAllowingForLoad(.init())
        #expect(report.overallStatus == .critical)
        func issue(_ check: String, _ object: String) -> Herald_Verification_V1_Issue? {
          report.issues.first { $0.check == check && $0.affectedObject == object }
        }
        let expected: [(String, String, Herald_Verification_V1_Severity, Herald_Verification_V1_Category)] = [
          ("schema.missing_column", "campaign.campaign_variants.campaign_id", .critical, .database),
          ("schema.missing_constraint", "campaign.list_members.list_members_subscriber_id_fkey", .critical, .database),
          ("schema.extra_index", "campaign.extra_first_name_idx", .medium, .database),
          ("ledger.checksum_changed", "ratelimit.schema_migrations version 1", .critical, .database),
          ("data.orphan_message_campaign", "delivery.messages.campaign_id", .high, .data),
          ("data.orphan_delivery_event", "delivery.delivery_events.message_id", .medium, .data),
          ("data.orphan_outbox_entry", "campaign.outbox", .high, .data),
          ("data.malformed_email", "campaign.subscribers.email", .medium, .data),
          ("data.duplicate_email", "campaign.subscribers.email", .high, .data),
          ("data.stuck_sending", "delivery.messages status sending", .high, .data),
          ("service.down", "service sync", .critical, .service),
        ]
        for (check, object, severity, category) in expected {
          let found = issue(check, object)
          #expect(found != nil, "\(check) on \(object) not found in \(report.issues.map { "\($0.check) \($0.affectedObject)" })")
          #expect(found?.severity == severity && found?.category == category, "\(check): \(String(describing: found))")
        }
        // A data check reading the dropped column is noted as not checked; the others ran.
        let data = try #require(report.components.first { $0.component == "data" })
        #expect(data.note.contains("data.conversion_variant_missing") && data.note.contains("campaign_id"), "\(data.note)")
        let checksum = try #require(issue("ledger.checksum_changed", "ratelimit.schema_migrations version 1"))
        #expect(checksum.description_p.contains(String(repeating: "deadbeef", count: 8)) && checksum.description_p.contains("migration 1"))
        // Sample keys never show personal data whole.
        let malformed = try #require(issue("data.malformed_email", "campaign.subscribers.email"))
        #expect(malformed.count == 2 && malformed.sampleKeys.count == 2)
        #expect(report.issues.flatMap(\.sampleKeys).allSatisfy { !$0.contains("ada@example.com") && !$0.contains("not-an-email") })
        #expect(report.summary.hasPrefix("CRITICAL:"))
        #expect(report.components.first { $0.component == "health" }?.status == .critical)
        // What `herald_verification_issues{severity}` shows at a scrape: the open issues, every severity.
        let openBySeverity = try await VerificationStore(client: database, logger: Logger(label: "test")).openIssuesBySeverity()
        let bySeverity: [(Finding.Severity, Herald_Verification_V1_Severity)] = [
          (.critical, .critical), (.high, .high), (.medium, .medium), (.low, .low),
        ]
        for (severity, wire) in bySeverity {
          #expect(openBySeverity[severity] == report.issues.filter { $0.severity == wire }.count, "\(severity): \(openBySeverity)")
        }

        // CRITICAL issues alert at once, once per fingerprint; HIGH ones only after 5 occurrences.
        try await eventually("the alerts") { alerts.count >= 4 }
        let alerted = alerts.all.compactMap {
          JSONValue.parse(String(decoding: $0.body, as: UTF8.self))?.object?["fingerprint"]?.stringValue
        }
        #expect(Set(alerted) == Set(report.issues.filter { $0.severity == .critical }.map(\.fingerprint)))
        _ = try await verification.runVerificationAllowingForLoad(.with { $0.component = "ledger" })
        #expect(alerts.count == alerted.count)

        // A plan in review cannot run for real before approval; its dry run changes nothing.
        let orphan = try #require(issue("data.orphan_message_campaign", "delivery.messages.campaign_id"))
        let review = try await verification.proposeRepair(
          .with {
            $0.fingerprint = orphan.fingerprint
            $0.requestedBy = "test"
          })
        #expect(
          review.status == .pendingReview && review.needsReview && review.statements.last?.contains("DELETE FROM delivery.messages") == true
        )
        await #expect {
          _ = try await verification.runRepair(
            .with {
              $0.id = review.id
              $0.apply = true
            })
        } throws: {
          rpcError($0).0 == .failedPrecondition
        }
        let dry = try await verification.runRepair(.with { $0.id = review.id })
        #expect(dry.runs.last?.dryRun == true && dry.runs.last?.rows == [1, 1, 1] && dry.runs.last?.issueRemains == false)
        #expect(dry.runs.last?.committed == false && dry.status == .pendingReview)
        #expect(try await Self.count(database, "SELECT count(*)::int FROM delivery.messages WHERE idempotency_key = 'orphan:1'") == 1)
        let approved = try await verification.reviewRepair(
          .with {
            $0.id = review.id
            $0.approve = true
            $0.reviewer = "ops"
            $0.note = "junk"
          })
        #expect(approved.status == .approved && approved.reviewedBy == "ops")
        let deleted = try await verification.runRepair(
          .with {
            $0.id = review.id
            $0.apply = true
            $0.requestedBy = "ops"
          })
        #expect(deleted.status == .applied, "\(deleted.runs.last?.error ?? "")")
        let backup = try #require(deleted.runs.last?.backupTable)
        #expect(backup.hasPrefix("verification_backup.repair_"))
        #expect(try await Self.count(database, "SELECT count(*)::int FROM \(backup) WHERE idempotency_key = 'orphan:1'") == 1)
        #expect(try await Self.count(database, "SELECT count(*)::int FROM \(backup)_2") == 1)
        #expect(try await Self.count(database, "SELECT count(*)::int FROM delivery.messages WHERE idempotency_key = 'orphan:1'") == 0)
        // Its event went with it (not left behind as an orphan); only the injected orphan event remains.
        #expect(
          try await Self.count(
            database,
            "SELECT count(*)::int FROM delivery.delivery_events e WHERE NOT EXISTS (SELECT 1 FROM delivery.messages m WHERE m.id = e.message_id)"
          ) == 1)

        // The foreign key cannot come back while an orphan row breaks it: rolled back, nothing lost.
        let foreignKey = try #require(issue("schema.missing_constraint", "campaign.list_members.list_members_subscriber_id_fkey"))
        #expect(foreignKey.autoRepairable)
        let fkRepair = try await verification.proposeRepair(.with { $0.fingerprint = foreignKey.fingerprint })
        #expect(fkRepair.status == .proposed)
        let failed = try await verification.runRepair(
          .with {
            $0.id = fkRepair.id
            $0.apply = true
          })
        #expect(failed.status == .rolledBack)
        #expect(failed.runs.last?.error.contains("violates foreign key constraint") == true, "\(failed.runs.last?.error ?? "")")
        #expect(try await Self.count(database, "SELECT count(*)::int FROM campaign.list_members") == 3)
        #expect(
          try await Self.count(
            database, "SELECT count(*)::int FROM pg_constraint WHERE conname = 'list_members_subscriber_id_fkey'") == 0)

        // The auto-repairable ones, repaired and verified clean.
        for (check, object) in [
          ("schema.extra_index", "campaign.extra_first_name_idx"), ("data.stuck_sending", "delivery.messages status sending"),
        ] {
          let found = try #require(issue(check, object))
          #expect(found.autoRepairable)
          let repair = try await verification.proposeRepair(.with { $0.fingerprint = found.fingerprint })
          let applied = try await verification.runRepair(
            .with {
              $0.id = repair.id
              $0.apply = true
            })
          #expect(applied.status == .applied, "\(check): \(applied.runs.last?.error ?? "")")
        }
        // Decided by the send journal: the send that never began is queued again as it was, the
        // one that began is unknown (it may have reached the provider).
        #expect(
          try await Self.count(
            database,
            """
            SELECT count(*)::int FROM delivery.messages
            WHERE idempotency_key = 'stuck:1' AND status = 'queued' AND NOT ambiguous AND attempts = 0 AND lease_token IS NULL
            """) == 1)
        #expect(
          try await Self.count(
            database,
            "SELECT count(*)::int FROM delivery.messages WHERE idempotency_key = 'stuck:2' AND status = 'unknown' AND ambiguous AND attempts = 1"
          ) == 1)
        #expect(
          try await Self.count(
            database,
            """
            SELECT count(*)::int FROM delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id
            WHERE (m.idempotency_key, e.status) IN (('stuck:1', 'deferred'), ('stuck:2', 'unknown'))
            """) == 2)
        #expect(try await Self.count(database, "SELECT count(*)::int FROM delivery.send_journal") == 0)
        // With the orphan gone, the foreign key's repair goes through.
        try await Self.sql(
          database,
          "DELETE FROM campaign.list_members m WHERE NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = m.subscriber_id)")
        let retried = try await verification.proposeRepair(.with { $0.fingerprint = foreignKey.fingerprint })
        #expect(
          try await verification.runRepair(
            .with {
              $0.id = retried.id
              $0.apply = true
            }
          ).status == .applied)

        let after = try await verification.runVerificationAllowingForLoad(.init())
        let remaining = Set(after.issues.map(\.fingerprint))
        for gone in [foreignKey.fingerprint, orphan.fingerprint]
          + ["schema.extra_index", "data.stuck_sending"].compactMap({ check in
            report.issues.first { $0.check == check }?.fingerprint
          })
        {
          #expect(!remaining.contains(gone), "\(gone) is still reported")
        }
        // The column's constraints went with it; they are still reported, with the column.
        #expect(
          after.issues.contains { $0.check == "schema.missing_constraint" && $0.affectedObject.hasPrefix("campaign.campaign_variants.") })
        let open = try await verification.listIssues(.init()).issues
        #expect(!open.contains { $0.check == "schema.extra_index" })
        let all = try await verification.listIssues(.with { $0.includeResolved = true }).issues
        let resolved = try #require(all.first { $0.check == "schema.extra_index" })
        #expect(!resolved.open && resolved.occurrences >= 1)
        let checksumNow = try #require(open.first { $0.check == "ledger.checksum_changed" })
        #expect(checksumNow.occurrences == 3 && checksumNow.firstSeenAt.date < checksumNow.lastSeenAt.date)
        let audit = try await Self.count(database, "SELECT count(*)::int FROM verification.repair_audit")
        #expect(audit >= 10)
      }
    }
  }
}
