import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldMigrations
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO

/// Ledger findings of one schema (SPEC §6: checksum changes, gaps, duplicates, unknown or pending).
enum LedgerFindings {
  static func of(_ report: SchemaLedgerReport, duplicates: [(name: String, versions: [Int])]) -> [Finding] {
    let schema = report.schema
    func finding(_ check: String, _ severity: Finding.Severity, _ object: String, _ description: String, suggested: String) -> Finding {
      Finding(
        check: check, component: "ledger:\(schema)", severity: severity, category: .database, description: description,
        affectedObject: object, count: 1, sampleKeys: [], suggestedRepair: suggested, repair: nil)
    }
    guard report.state != .missing else {
      return [
        finding(
          "ledger.missing", .critical, "\(schema).schema_migrations", "schema \(schema) has no migration ledger (or does not exist)",
          suggested: "start the \(schema) service: it applies its migrations")
      ]
    }
    var findings = report.findings.map { item -> Finding in
      let object = "\(schema).schema_migrations version \(item.version)"
      switch item.kind {
      case "checksum_changed":
        return finding(
          "ledger.checksum_changed", .critical, object,
          "migration \(item.version) '\(item.name)' of \(schema) was changed after it was applied: recorded checksum \(item.recordedChecksum ?? "?"), this build's \(item.expectedChecksum ?? "?")",
          suggested: "find out which text ran; restore the migration's original text, or the ledger row if it was edited by hand")
      case "unknown_applied":
        return finding(
          "ledger.unknown_applied", .critical, object,
          "migration \(item.version) '\(item.name)' is applied to \(schema) but unknown to this build",
          suggested: "deploy the build that has it (a rollback to an older build?)")
      case "gap":
        return finding(
          "ledger.gap", .high, object, "migration \(item.version) '\(item.name)' of \(schema) is not applied, but a later one is",
          suggested: "apply the missing migration by hand after checking why it was skipped")
      default:
        return finding(
          "ledger.pending", .medium, object, "migration \(item.version) '\(item.name)' of \(schema) is not applied yet",
          suggested: "restart the \(schema) service, which applies it")
      }
    }
    for duplicate in duplicates {
      findings.append(
        finding(
          "ledger.duplicate", .high, "\(schema).schema_migrations \(duplicate.name)",
          "migration '\(duplicate.name)' is recorded \(duplicate.versions.count) times in \(schema)'s ledger (versions \(duplicate.versions.map(String.init).joined(separator: ", ")))",
          suggested: "remove the extra ledger rows after checking which ran"))
    }
    return findings
  }
}

/// One data check: a query of affected rows (key, optional personal value), how it is reported,
/// and its repair.
struct DataCheck: Sendable {
  var check: String
  var component: String
  var severity: Finding.Severity
  var category: Finding.Category
  var object: String
  /// Rows `key text, personal text` (personal data is masked in samples).
  var query: String
  var describe: @Sendable (Int) -> String
  var suggested: String
  var repair: RepairPlan?

  func run(connection: PostgresConnection, logger: Logger) async throws -> [Finding] {
    // One read: the first 10 keys in order, each row carrying the count of all of them.
    var count: Int64 = 0
    var samples: [String] = []
    for try await (key, personal, total) in try await connection.query(
      PostgresQuery(
        unsafeSQL: "SELECT k, coalesce(p, ''), count(*) OVER ()::bigint FROM (\(query)) AS affected(k, p) ORDER BY k LIMIT 10"),
      logger: logger
    ).decode((String, String, Int64).self) {
      count = total
      samples.append(personal.isEmpty ? key : "\(key) (\(Mask.personal(personal)))")
    }
    guard count > 0 else { return [] }
    return [
      Finding(
        check: check, component: component, severity: severity, category: category, description: describe(Int(count)),
        affectedObject: object, count: Int(count), sampleKeys: samples, suggestedRepair: suggested, repair: repair)
    ]
  }
}

extension RepairPlan {
  /// Deletes the rows of `table` (named `alias` in `condition`) that `condition` picks, copied to
  /// the backup first.
  static func delete(from table: String, as alias: String, where condition: String, needsReview: Bool, risk: String) -> RepairPlan {
    RepairPlan(
      statements: ["DELETE FROM \(table) \(alias) WHERE \(condition)"],
      backupQuery: "SELECT \(alias).* FROM \(table) \(alias) WHERE \(condition)",
      needsReview: needsReview, risk: risk)
  }
}

enum DataChecks {
  /// A subscriber's e-mail as the campaign service accepts it (lower-case, one @, a dotted domain).
  static let emailPattern = #"^[^@\s,;<>]{1,64}@[^@\s,;<>.]+(\.[^@\s,;<>.]+)+$"#
  static let phonePattern = #"^\+[1-9][0-9]{6,14}$"#

  /// `stuckAfter`: how long past its lease a message in `sending` counts as stuck.
  static func all(stuckAfter: Duration) -> [DataCheck] {
    let stuckSeconds = Int(stuckAfter.components.seconds)
    // Predicates a check and its repair share (query, statements and backup pick the same rows).
    let messageWithoutCampaign = "m.campaign_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = m.campaign_id)"
    let eventWithoutMessage = "NOT EXISTS (SELECT 1 FROM delivery.messages m WHERE m.id = e.message_id)"
    let linkWithoutSubscriber = "NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = r.subscriber_id)"
    // SPEC §11: a text (or WhatsApp message) queued to a number that wrote STOP on its channel (and
    // not a compliance reply).
    let queuedAfterStop = """
      m.channel IN ('sms', 'whatsapp') AND m.status IN ('queued', 'held') AND NOT m.compliance
        AND EXISTS (SELECT 1 FROM delivery.suppressions s WHERE s.address = delivery.suppression_key(m.channel, m.recipient) AND s.reason = 'sms_keyword')
      """
    // An inbound message the campaign service has taken in (older than a minute) without a
    // subscriber, though one that existed when it came in has the sender's number or address.
    let unlinked = "i.subscriber_id IS NULL AND i.received_at < now() - interval '1 minute'"
    let senderIsSubscriber =
      """
      ((i.channel = 'sms' AND s.phone = i.sender) OR (i.channel = 'email' AND s.email = i.sender)
        OR (i.channel = 'whatsapp' AND s.whatsapp = i.sender)) AND s.created_at <= i.received_at
      """
    let unlinkedInbound = "\(unlinked) AND EXISTS (SELECT 1 FROM campaign.subscribers s WHERE \(senderIsSubscriber))"
    // SPEC §13: a snapshot holds counters as they were; they only grow, so none is above them now.
    let resultCounters = [
      "queued", "sent", "delivered", "bounced", "soft_bounced", "failed", "opened", "unique_opened", "clicked", "unique_clicked",
      "replied", "unsubscribed", "complained", "cost_cents", "conversions", "revenue_cents",
    ]
    let snapshotAboveLive = resultCounters.map { "s.\($0) > coalesce(l.\($0), 0)" }.joined(separator: " OR ")
    // SPEC §13: an A/B test's rest (wave 1) is written only by its decision, to its winner, and no
    // recipient of a campaign gets two of its messages.
    let restOutsideDecision = "o.wave = 1 AND (t.decided_at IS NULL OR (t.winner IS NOT NULL AND o.variant <> t.winner))"
    return [
      DataCheck(
        check: "data.snapshot_above_live", component: "data", severity: .medium, category: .data,
        object: "campaign.metric_snapshots",
        query: """
          WITH live AS (
            SELECT d.campaign_id, CASE WHEN grouping(d.variant) = 1 THEN '' ELSE d.variant END AS variant,
              (sum(d.events) FILTER (WHERE d.status = 'queued'))::int8 AS queued,
              (sum(d.events) FILTER (WHERE d.status = 'sent'))::int8 AS sent,
              (sum(d.events) FILTER (WHERE d.status = 'delivered'))::int8 AS delivered,
              (sum(d.events) FILTER (WHERE d.status = 'bounced'))::int8 AS bounced,
              (sum(d.events) FILTER (WHERE d.status = 'soft_bounced'))::int8 AS soft_bounced,
              (sum(d.events) FILTER (WHERE d.status = 'failed'))::int8 AS failed,
              (sum(d.events) FILTER (WHERE d.status = 'opened'))::int8 AS opened,
              (sum(d.events) FILTER (WHERE d.status = 'unique_opened'))::int8 AS unique_opened,
              (sum(d.events) FILTER (WHERE d.status = 'clicked'))::int8 AS clicked,
              (sum(d.events) FILTER (WHERE d.status = 'unique_clicked'))::int8 AS unique_clicked,
              (sum(d.events) FILTER (WHERE d.status = 'replied'))::int8 AS replied,
              (sum(d.events) FILTER (WHERE d.status = 'unsubscribed'))::int8 AS unsubscribed,
              (sum(d.events) FILTER (WHERE d.status = 'complained'))::int8 AS complained,
              sum(d.cost_cents)::int8 AS cost_cents,
              (sum(d.events) FILTER (WHERE d.status = 'converted'))::int8 AS conversions,
              sum(d.value_cents)::int8 AS revenue_cents
            FROM campaign.campaign_daily_stats d GROUP BY GROUPING SETS ((d.campaign_id, d.variant), (d.campaign_id))
          )
          SELECT s.campaign_id::text || ' ' || CASE WHEN s.variant = '' THEN '(whole campaign)' ELSE s.variant END
              || ' at ' || to_char(s.taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), NULL::text
          FROM (
            -- Counters only grow: the latest snapshot of each campaign and variant is the highest.
            SELECT DISTINCT ON (campaign_id, variant) * FROM campaign.metric_snapshots ORDER BY campaign_id, variant, taken_at DESC
          ) s LEFT JOIN live l ON l.campaign_id = s.campaign_id AND l.variant = s.variant
          WHERE \(snapshotAboveLive)
          """,
        describe: { "\($0) metric snapshots hold a counter above the campaign's live counters" },
        suggested:
          "the live counters went down since (edited or rebuilt by hand): compare them with delivery's events (data.campaign_counters_mismatch) and with conversions",
        repair: nil),
      DataCheck(
        check: "data.conversion_variant_missing", component: "data", severity: .high, category: .data,
        object: "campaign.conversions.variant",
        query: """
          SELECT v.id::text, v.idempotency_key FROM campaign.conversions v
          WHERE v.campaign_id IS NOT NULL AND v.variant IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM campaign.campaign_variants cv WHERE cv.campaign_id = v.campaign_id AND cv.name = v.variant)
          """,
        describe: { "\($0) conversions credit a variant their campaign does not have (a foreign key holds the campaign)" },
        suggested: "find what changed the conversions or the campaigns by hand; the revenue of these is counted nowhere",
        repair: nil),
      DataCheck(
        check: "data.ab_rest_outside_decision", component: "data", severity: .critical, category: .data,
        object: "campaign.outbox (A/B tests)",
        query: """
          WITH recent AS (
            -- Tests of campaigns still sending or finished in the last week: older ones were
            -- checked while they were recent, and their outboxes are left unread.
            SELECT t.* FROM campaign.ab_tests t JOIN campaign.campaigns c ON c.id = t.campaign_id
            WHERE c.finished_at IS NULL OR c.finished_at > now() - interval '7 days'
          )
          SELECT o.campaign_id::text || ' ' || o.subscriber_id::text, 'rest entry for ' || o.variant
          FROM recent t JOIN campaign.outbox o ON o.campaign_id = t.campaign_id WHERE \(restOutsideDecision)
          UNION ALL
          SELECT m.campaign_id::text || ' ' || m.subscriber_id::text, count(*)::text || ' messages'
          FROM recent t JOIN delivery.messages m ON m.campaign_id = t.campaign_id
          WHERE m.subscriber_id IS NOT NULL GROUP BY m.campaign_id, m.subscriber_id HAVING count(*) > 1
          """,
        describe: {
          "\($0) A/B test recipients got the rest of the audience outside the test's decision (before it, or another variant than the winner), or more than one message"
        },
        suggested:
          "pause the campaign (POST /v1/campaigns/{id}/pause) and find what wrote these outbox entries or messages; the decision is in the campaign's ab_test",
        repair: nil),
      DataCheck(
        check: "data.journey_step_missing", component: "data", severity: .high, category: .data,
        object: "campaign.journey_enrolments",
        query: """
          SELECT e.id::text, 'at step ' || coalesce(e.step, '(none)') || ' of version ' || e.version
          FROM campaign.journey_enrolments e
          JOIN campaign.journey_versions v ON v.journey_id = e.journey_id AND v.version = e.version
          WHERE e.status IN ('active', 'waiting')
            AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v.definition -> 'steps') s WHERE s ->> 'id' = e.step)
          """,
        describe: { "\($0) journey enrolments wait on a step their version does not have" },
        suggested:
          "edit the journey so a version has the step and migrate them (PUT /v1/journeys/{id} with migrate_enrolments), or archive the journey",
        repair: nil),
      DataCheck(
        check: "data.journey_send_repeated", component: "data", severity: .critical, category: .data,
        object: "delivery.messages (journey sends)",
        query: """
          -- Keys are journey:<journey>:<version>:<step>:<enrolment>: one step of one enrolment sent
          -- under two versions (an enrolment migrated past a step it had done). Last 30 days.
          SELECT split_part(m.idempotency_key, ':', 5) || ' ' || split_part(m.idempotency_key, ':', 4),
            count(*)::text || ' messages'
          FROM delivery.messages m
          WHERE m.idempotency_key LIKE 'journey:%' AND m.created_at > now() - interval '30 days'
          GROUP BY split_part(m.idempotency_key, ':', 2), split_part(m.idempotency_key, ':', 4), split_part(m.idempotency_key, ':', 5)
          HAVING count(*) > 1
          """,
        describe: { "\($0) journey send steps were done more than once for one enrolment" },
        suggested:
          "pause the journey (POST /v1/journeys/{id}/pause) and find what moved these enrolments back; each enrolment's path shows its steps",
        repair: nil),
      DataCheck(
        check: "data.push_token_reused", component: "data", severity: .critical, category: .data,
        object: "delivery.messages (push) and campaign.push_tokens",
        query: """
          -- A campaign's or journey's push notification queued to a token at least a minute after
          -- the token was retired (the push service had said the app no longer has it, or the
          -- person unsubscribed). Last 30 days.
          SELECT m.id::text, t.platform || ':' || left(t.token, 16) || '… retired ' || t.retired_reason
          FROM delivery.messages m
          JOIN campaign.push_tokens t ON t.token = m.recipient AND t.platform = m.payload -> 'push' ->> 'platform'
          WHERE m.channel = 'push' AND (m.campaign_id IS NOT NULL OR m.idempotency_key LIKE 'journey:%')
            AND m.created_at > now() - interval '30 days' AND t.retired_at IS NOT NULL
            AND m.created_at > t.retired_at + interval '1 minute'
          """,
        describe: { "\($0) push notifications of campaigns or journeys were queued to tokens already retired" },
        suggested:
          "find what sent them: campaigns and journeys send only to live tokens (campaign.push_tokens with retired_at unset)",
        repair: nil),
      DataCheck(
        check: "data.journey_enrolment_overdue", component: "data", severity: .medium, category: .data,
        object: "campaign.journey_enrolments",
        query: """
          SELECT e.id::text, 'due since ' || to_char(e.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
          FROM campaign.journey_enrolments e JOIN campaign.journeys j ON j.id = e.journey_id
          WHERE j.status = 'active' AND e.status IN ('active', 'waiting') AND e.due_at < now() - interval '15 minutes'
          UNION ALL
          SELECT d.enrolment_id::text || ' ' || d.step, 'send pending since ' || to_char(d.done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
          FROM campaign.journey_steps_done d WHERE d.outcome = 'pending' AND d.done_at < now() - interval '15 minutes'
          """,
        describe: { "\($0) enrolments of active journeys (or their sends) are over 15 minutes past their due time" },
        suggested:
          "check that campaign replicas run their journey schedulers and relays (herald_campaign_journey_steps_total rising, herald_campaign_journey_sends_pending falling) and read their logs",
        repair: nil),
      DataCheck(
        check: "data.sms_queued_after_stop", component: "data", severity: .critical, category: .data, object: "delivery.messages",
        query: "SELECT m.id::text, m.recipient FROM delivery.messages m WHERE \(queuedAfterStop)",
        describe: { "\($0) texts wait in the queue for numbers that texted STOP" },
        suggested: "suppress them: the recipients revoked consent (the claim suppresses them too when they come due)",
        repair: RepairPlan(
          statements: [
            """
            WITH stopped AS (
              UPDATE delivery.messages m SET status = 'suppressed', last_error = 'the recipient texted STOP', updated_at = now()
              WHERE \(queuedAfterStop) RETURNING m.id
            )
            INSERT INTO delivery.delivery_events (message_id, status, detail)
            SELECT id, 'suppressed', 'the recipient texted STOP (verification repair)' FROM stopped
            """
          ],
          backupQuery: "SELECT m.* FROM delivery.messages m WHERE \(queuedAfterStop)", needsReview: false, risk: "low")),
      DataCheck(
        check: "data.orphan_auto_response", component: "data", severity: .medium, category: .data,
        object: "campaign.auto_responses.inbound_id",
        query: """
          SELECT r.id::text, NULL::text FROM campaign.auto_responses r
          WHERE NOT EXISTS (SELECT 1 FROM delivery.inbound_messages i WHERE i.id = r.inbound_id)
          """,
        describe: { "\($0) auto-responses answer an inbound message that does not exist" },
        suggested: "find where the inbound messages went (Herald never deletes one); the answers themselves are in delivery's queue",
        repair: nil),
      DataCheck(
        check: "data.inbound_without_subscriber", component: "data", severity: .medium, category: .data,
        object: "delivery.inbound_messages.subscriber_id",
        query: "SELECT i.id::text, i.sender FROM delivery.inbound_messages i WHERE \(unlinkedInbound)",
        describe: { "\($0) inbound messages are not linked to the subscriber with their sender's number or address" },
        suggested: "link them (the campaign service's inbound feed does so as it reads them: is it running?)",
        repair: RepairPlan(
          statements: [
            """
            UPDATE delivery.inbound_messages i SET subscriber_id = s.id FROM campaign.subscribers s
            WHERE \(unlinked) AND \(senderIsSubscriber)
            """
          ],
          backupQuery: "SELECT i.* FROM delivery.inbound_messages i WHERE \(unlinkedInbound)", needsReview: false, risk: "low")),
      DataCheck(
        check: "data.orphan_message_campaign", component: "data", severity: .high, category: .data, object: "delivery.messages.campaign_id",
        query: "SELECT m.id::text, NULL::text FROM delivery.messages m WHERE \(messageWithoutCampaign)",
        describe: { "\($0) delivery messages belong to a campaign that does not exist" },
        suggested: "find where the campaign went; delete the messages only once they are known to be junk",
        repair: RepairPlan(
          statements: [
            // The messages are locked first, so no event is added to one of them meanwhile (every
            // event is written under its message's row lock); then their events, which no foreign
            // key takes with them (delivery migration 4), then the messages.
            "SELECT 1 FROM delivery.messages m WHERE \(messageWithoutCampaign) FOR UPDATE",
            "DELETE FROM delivery.delivery_events e USING delivery.messages m WHERE m.id = e.message_id AND \(messageWithoutCampaign)",
            "DELETE FROM delivery.messages m WHERE \(messageWithoutCampaign)",
          ],
          backupQuery: "SELECT m.* FROM delivery.messages m WHERE \(messageWithoutCampaign)",
          alsoBackUp: [
            "SELECT e.* FROM delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id WHERE \(messageWithoutCampaign)"
          ], needsReview: true, risk: "high")),
      DataCheck(
        check: "data.orphan_message_subscriber", component: "data", severity: .high, category: .data,
        object: "delivery.messages.subscriber_id",
        query: """
          SELECT m.id::text, NULL::text FROM delivery.messages m
          WHERE m.subscriber_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = m.subscriber_id)
          """,
        describe: { "\($0) delivery messages are for a subscriber that does not exist" },
        suggested: "delete the messages once they are known to be junk", repair: nil),
      DataCheck(
        check: "data.orphan_delivery_event", component: "data", severity: .medium, category: .data,
        object: "delivery.delivery_events.message_id",
        query: "SELECT e.id::text, NULL::text FROM delivery.delivery_events e WHERE \(eventWithoutMessage)",
        describe: { "\($0) delivery events belong to a message that does not exist (the analytics feed leaves them out)" },
        suggested:
          "find where the messages went (Herald deletes one only through a reviewed repair, with its events); delete the events once they are known to be junk",
        repair: .delete(from: "delivery.delivery_events", as: "e", where: eventWithoutMessage, needsReview: true, risk: "medium")),
      DataCheck(
        check: "data.orphan_outbox_entry", component: "data", severity: .high, category: .data, object: "campaign.outbox",
        query: """
          SELECT o.campaign_id::text || ':' || o.subscriber_id::text, NULL::text FROM campaign.outbox o
          WHERE NOT EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = o.campaign_id)
            OR NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = o.subscriber_id)
          """,
        describe: { "\($0) outbox entries belong to a campaign or a subscriber that does not exist" },
        suggested:
          "find where the campaign or subscriber went (neither is ever deleted by Herald); the relay skips such entries as no longer active",
        repair: nil),
      DataCheck(
        check: "data.orphan_sync_link", component: "sync", severity: .medium, category: .sync, object: "sync.records.subscriber_id",
        query: "SELECT r.job_id::text || '/' || r.record_id, NULL::text FROM sync.records r WHERE \(linkWithoutSubscriber)",
        describe: { "\($0) synced records are linked to a subscriber that does not exist" },
        suggested: "delete the links: the next full sync links or creates the subscribers again",
        repair: .delete(from: "sync.records", as: "r", where: linkWithoutSubscriber, needsReview: true, risk: "medium")),
      DataCheck(
        check: "data.malformed_email", component: "data", severity: .medium, category: .data, object: "campaign.subscribers.email",
        query: "SELECT id::text, email FROM campaign.subscribers WHERE email IS NOT NULL AND email !~ '\(emailPattern)'",
        describe: { "\($0) subscribers have a malformed e-mail address" },
        suggested: "correct the addresses (or erase the subscribers); nothing can be sent to them", repair: nil),
      DataCheck(
        check: "data.malformed_phone", component: "data", severity: .medium, category: .data, object: "campaign.subscribers.phone",
        query: "SELECT id::text, phone FROM campaign.subscribers WHERE phone IS NOT NULL AND phone !~ '\(phonePattern)'",
        describe: { "\($0) subscribers have a phone number that is not E.164" },
        suggested: "correct the numbers to E.164 (+<country><number>)", repair: nil),
      DataCheck(
        check: "data.duplicate_email", component: "data", severity: .high, category: .data, object: "campaign.subscribers.email",
        query: """
          SELECT s.id::text, s.email FROM campaign.subscribers s
          JOIN (SELECT lower(btrim(email)) AS k FROM campaign.subscribers WHERE email IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d
            ON d.k = lower(btrim(s.email))
          """,
        describe: { "\($0) subscribers share an e-mail address once normalised (lower-case, trimmed)" },
        suggested:
          "keep the oldest subscriber of each group; the plan deletes the newer ones that no campaign, list or conversion refers to (with their consent history): review it, or merge by hand",
        repair: RepairPlan(
          statements: [
            """
            DELETE FROM campaign.subscribers s USING campaign.subscribers keep
            WHERE lower(btrim(s.email)) = lower(btrim(keep.email)) AND (keep.created_at, keep.id) < (s.created_at, s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.outbox o WHERE o.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.list_members l WHERE l.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.conversions v WHERE v.subscriber_id = s.id)
            """
          ],
          backupQuery: """
            SELECT s.* FROM campaign.subscribers s
            WHERE EXISTS (SELECT 1 FROM campaign.subscribers keep
                WHERE lower(btrim(s.email)) = lower(btrim(keep.email)) AND (keep.created_at, keep.id) < (s.created_at, s.id))
              AND NOT EXISTS (SELECT 1 FROM campaign.outbox o WHERE o.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.list_members l WHERE l.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.conversions v WHERE v.subscriber_id = s.id)
            """,
          alsoBackUp: [
            """
            SELECT e.* FROM campaign.consent_events e JOIN campaign.subscribers s ON s.id = e.subscriber_id
            WHERE EXISTS (SELECT 1 FROM campaign.subscribers keep
                WHERE lower(btrim(s.email)) = lower(btrim(keep.email)) AND (keep.created_at, keep.id) < (s.created_at, s.id))
              AND NOT EXISTS (SELECT 1 FROM campaign.outbox o WHERE o.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.list_members l WHERE l.subscriber_id = s.id)
              AND NOT EXISTS (SELECT 1 FROM campaign.conversions v WHERE v.subscriber_id = s.id)
            """
          ], needsReview: true, risk: "high")),
      DataCheck(
        check: "data.missing_contact", component: "data", severity: .high, category: .data, object: "campaign.subscribers",
        query: "SELECT id::text, NULL::text FROM campaign.subscribers WHERE email IS NULL AND phone IS NULL AND status <> 'erased'",
        describe: { "\($0) subscribers have neither an e-mail nor a phone" },
        suggested: "add a contact or erase them", repair: nil),
      DataCheck(
        check: "data.consent_without_provenance", component: "data", severity: .high, category: .data,
        object: "campaign.subscribers consent",
        query: """
          SELECT id::text, NULL::text FROM campaign.subscribers
          WHERE (email_subscribed AND (email_consent_source IS NULL OR email_consented_at IS NULL))
             OR (sms_subscribed AND (sms_consent_source IS NULL OR sms_consented_at IS NULL))
          """,
        describe: { "\($0) subscribers are subscribed without a recorded source and time of consent" },
        suggested: "find the consent's source; until then, unsubscribe them (nothing may be sent without provenance)",
        repair: RepairPlan(
          statements: [
            """
            UPDATE campaign.subscribers SET
              email_subscribed = email_subscribed AND email_consent_source IS NOT NULL AND email_consented_at IS NOT NULL,
              sms_subscribed = sms_subscribed AND sms_consent_source IS NOT NULL AND sms_consented_at IS NOT NULL,
              updated_at = now()
            WHERE (email_subscribed AND (email_consent_source IS NULL OR email_consented_at IS NULL))
               OR (sms_subscribed AND (sms_consent_source IS NULL OR sms_consented_at IS NULL))
            """
          ],
          backupQuery: """
            SELECT * FROM campaign.subscribers
            WHERE (email_subscribed AND (email_consent_source IS NULL OR email_consented_at IS NULL))
               OR (sms_subscribed AND (sms_consent_source IS NULL OR sms_consented_at IS NULL))
            """, needsReview: true, risk: "medium")),
      DataCheck(
        check: "data.stuck_sending", component: "data", severity: .high, category: .data, object: "delivery.messages status sending",
        query: """
          SELECT id::text, NULL::text FROM delivery.messages
          WHERE status = 'sending' AND coalesce(lease_expires_at, updated_at) < now() - interval '\(stuckSeconds) seconds'
          """,
        describe: { "\($0) messages are stuck in sending past their lease (their worker is gone and nothing took them back)" },
        suggested:
          "decide them by the send journal, as delivery's lease reclaim does: those whose send never began go back to the queue, those whose send began are marked unknown (it may have reached the provider); requeue those from the dead-letter view if they must go out",
        repair: RepairPlan(
          statements: [
            """
            WITH stuck AS (
              -- Without a lease token (written by hand, or before the send journal) nothing says the
              -- send never began: it counts as begun (unknown), never as safe to send again.
              SELECT m.id, m.campaign_id, m.reserved_cents, m.lease_token,
                m.lease_token IS NULL OR EXISTS (
                  SELECT 1 FROM delivery.send_journal j WHERE j.lease_token = m.lease_token AND m.id = ANY (j.message_ids)
                ) AS begun
              FROM delivery.messages m
              WHERE m.status = 'sending' AND coalesce(m.lease_expires_at, m.updated_at) < now() - interval '\(stuckSeconds) seconds'
              FOR UPDATE OF m SKIP LOCKED
            ), updated AS (
              UPDATE delivery.messages m SET
                status = CASE WHEN s.begun THEN 'unknown' ELSE 'queued' END, ambiguous = m.ambiguous OR s.begun,
                attempts = m.attempts - CASE WHEN s.begun THEN 0 ELSE 1 END, lease_token = NULL, lease_expires_at = NULL,
                cost_cents = m.cost_cents + CASE WHEN s.begun THEN m.reserved_cents ELSE 0 END, reserved_cents = 0,
                last_error = CASE WHEN s.begun THEN 'lease expired while sending; outcome unknown (repaired by verification)'
                  ELSE m.last_error END,
                updated_at = now()
              FROM stuck s WHERE m.id = s.id
              RETURNING m.id, s.begun
            ), events AS (
              INSERT INTO delivery.delivery_events (message_id, status, detail)
              SELECT id, CASE WHEN begun THEN 'unknown' ELSE 'deferred' END,
                CASE WHEN begun THEN 'lease expired while sending (repaired by verification)'
                  ELSE 'back in the queue: its lease expired before it was handed to a provider (repaired by verification)' END
              FROM updated
            ), journal AS (
              DELETE FROM delivery.send_journal WHERE lease_token IN (SELECT lease_token FROM stuck)
            )
            UPDATE delivery.spend_caps c SET
              reserved_cents = c.reserved_cents - x.held, spent_cents = c.spent_cents + x.charged, updated_at = now()
            FROM (
              SELECT campaign_id, sum(reserved_cents) AS held, sum(CASE WHEN begun THEN reserved_cents ELSE 0 END) AS charged
              FROM stuck WHERE reserved_cents > 0 GROUP BY campaign_id
            ) x
            WHERE c.campaign_id = x.campaign_id
            """
          ],
          backupQuery: """
            SELECT * FROM delivery.messages
            WHERE status = 'sending' AND coalesce(lease_expires_at, updated_at) < now() - interval '\(stuckSeconds) seconds'
            """, needsReview: false, risk: "low")),
      DataCheck(
        // The campaign service's deliverability guard paused these (its reasons start so); the
        // issue carries the alert on verification's alert path.
        check: "data.campaign_paused_by_guard", component: "data", severity: .critical, category: .data,
        object: "campaign.campaigns status paused",
        query: """
          SELECT id::text || ': ' || substr(status_reason, \(DeliverabilityGuardReason.prefix.count + 1)), NULL::text
          FROM campaign.campaigns
          WHERE status = 'paused' AND starts_with(status_reason, '\(DeliverabilityGuardReason.prefix)')
          """,
        describe: { "\($0) campaigns paused themselves: their complaint or hard-bounce rate passed the guard's threshold" },
        suggested:
          "find why recipients complain or bounce (the list's source, consent, content, the sending domain's reputation); clean the list, then resume the campaign or cancel it",
        repair: nil),
      DataCheck(
        // SPEC §10: a sending domain the delivery guard held (DomainGuard) sends nothing.
        check: "data.sending_domain_held", component: "data", severity: .critical, category: .data,
        object: "delivery.domain_holds",
        query: """
          SELECT domain || ': ' || reason, NULL::text FROM delivery.domain_holds WHERE released_at IS NULL
          """,
        describe: { "\($0) sending domains are held by the deliverability guard: their providers send nothing" },
        suggested:
          "find why recipients complain or bounce (the lists sent to, consent, content, authentication); then release the domain (DELETE /v1/deliverability/holds/{domain})",
        repair: nil),
      DataCheck(
        check: "data.spend_over_budget", component: "data", severity: .critical, category: .data, object: "delivery.spend_caps",
        query: "SELECT campaign_id::text, NULL::text FROM delivery.spend_caps WHERE spent_cents + reserved_cents > budget_cents",
        describe: { "\($0) campaigns have spent (or reserved) more than their budget" },
        suggested: "find the sends that overspent (delivery events with cost) and raise the budget or account for them", repair: nil),
      DataCheck(
        // SPEC §6: campaign counters equal the delivery ledger's totals. The campaign service
        // counts the events its feed has taken in (up to the cursor it keeps with the counts, in
        // the same transaction), so exactly those events are compared: a feed that lags is no
        // mismatch. The statuses are DeliveryFeedConsumer.countedStatuses; opens and clicks judged
        // a machine's are counted as machine_opened and machine_clicked.
        check: "data.campaign_counters_mismatch", component: "data", severity: .high, category: .data,
        object: "campaign.campaign_daily_stats",
        query: """
          WITH feed AS (
            SELECT split_part(cursor, '.', 1)::xid8 AS txid, split_part(cursor, '.', 2)::bigint AS id
            FROM campaign.delivery_feed WHERE id = 1 AND cursor <> ''
          ), ledger AS (
            SELECT m.campaign_id, CASE WHEN e.machine THEN 'machine_' || e.status ELSE e.status END AS status,
              count(*) AS events, sum(e.cost_cents) AS cost_cents
            FROM feed, delivery.delivery_events e JOIN delivery.messages m ON m.id = e.message_id
            WHERE (e.txid, e.id) <= (feed.txid, feed.id)
              AND e.status IN (
                'queued', 'sent', 'delivered', 'bounced', 'soft_bounced', 'failed', 'opened', 'clicked', 'unsubscribed', 'complained',
                'replied')
              AND EXISTS (SELECT 1 FROM campaign.campaigns c WHERE c.id = m.campaign_id)
            GROUP BY 1, 2
          ), counters AS (
            -- Not the results' own cells: first opens and clicks (unique_*), conversions.
            SELECT campaign_id, status, sum(events) AS events, sum(cost_cents) AS cost_cents
            FROM campaign.campaign_daily_stats WHERE status NOT IN ('unique_opened', 'unique_clicked', 'converted') GROUP BY 1, 2
          )
          SELECT coalesce(l.campaign_id, c.campaign_id)::text || ' ' || coalesce(l.status, c.status)
              || ': counted ' || coalesce(c.events, 0) || ' (cost ' || coalesce(c.cost_cents, 0) || '), delivery has '
              || coalesce(l.events, 0) || ' (cost ' || coalesce(l.cost_cents, 0) || ')',
            NULL::text
          FROM ledger l FULL JOIN counters c ON c.campaign_id = l.campaign_id AND c.status = l.status
          WHERE coalesce(l.events, 0) <> coalesce(c.events, 0) OR coalesce(l.cost_cents, 0) <> coalesce(c.cost_cents, 0)
          """,
        describe: { "\($0) campaign counters (a campaign and status) differ from the delivery events the campaign service has taken in" },
        suggested:
          "find what changed the counts or the events by hand; the counts can be rebuilt from delivery_events, which is the ledger",
        repair: nil),
      DataCheck(
        check: "data.queued_to_suppressed", component: "data", severity: .high, category: .data,
        object: "delivery.messages to suppressed addresses",
        query: """
          SELECT m.id::text, m.recipient FROM delivery.messages m JOIN delivery.suppressions s ON s.address = delivery.suppression_key(m.channel, m.recipient)
          WHERE m.status = 'queued' AND m.not_before < now() - interval '\(stuckSeconds) seconds'
          """,
        describe: { "\($0) messages due for a while are still queued to suppressed addresses (no worker settled them)" },
        suggested: "mark them suppressed (workers would skip them at claim; this settles them now)",
        repair: RepairPlan(
          statements: [
            """
            WITH settled AS (
              UPDATE delivery.messages m SET status = 'suppressed', last_error = 'address suppressed (repaired by verification)', updated_at = now()
              FROM delivery.suppressions s WHERE s.address = delivery.suppression_key(m.channel, m.recipient) AND m.status = 'queued'
              RETURNING m.id
            )
            INSERT INTO delivery.delivery_events (message_id, status, detail)
            SELECT id, 'suppressed', 'address suppressed (repaired by verification)' FROM settled
            """
          ],
          backupQuery: """
            SELECT m.* FROM delivery.messages m JOIN delivery.suppressions s ON s.address = delivery.suppression_key(m.channel, m.recipient) WHERE m.status = 'queued'
            """, needsReview: false, risk: "low")),
      DataCheck(
        check: "data.queued_to_unsubscribed", component: "data", severity: .high, category: .data,
        object: "delivery.messages to unsubscribed subscribers",
        query: """
          SELECT m.id::text, m.recipient FROM delivery.messages m JOIN campaign.subscribers s ON s.id = m.subscriber_id
          WHERE m.status = 'queued' AND m.campaign_id IS NOT NULL
            AND ((m.channel = 'email' AND NOT s.email_subscribed) OR (m.channel = 'sms' AND NOT s.sms_subscribed)
            OR (m.channel = 'whatsapp' AND NOT s.whatsapp_subscribed)
            OR (m.channel = 'push' AND s.push_unsubscribed_at IS NOT NULL) OR s.status <> 'active')
          """,
        describe: { "\($0) queued campaign messages are for subscribers who withdrew consent (or are no longer active)" },
        suggested: "cancel them: unsubscribing wins over any later send",
        repair: RepairPlan(
          statements: [
            """
            WITH settled AS (
              UPDATE delivery.messages m SET status = 'suppressed', last_error = 'subscriber unsubscribed (repaired by verification)', updated_at = now()
              FROM campaign.subscribers s
              WHERE s.id = m.subscriber_id AND m.status = 'queued' AND m.campaign_id IS NOT NULL
                AND ((m.channel = 'email' AND NOT s.email_subscribed) OR (m.channel = 'sms' AND NOT s.sms_subscribed)
            OR (m.channel = 'whatsapp' AND NOT s.whatsapp_subscribed)
            OR (m.channel = 'push' AND s.push_unsubscribed_at IS NOT NULL) OR s.status <> 'active')
              RETURNING m.id
            )
            INSERT INTO delivery.delivery_events (message_id, status, detail)
            SELECT id, 'suppressed', 'subscriber unsubscribed (repaired by verification)' FROM settled
            """
          ],
          backupQuery: """
            SELECT m.* FROM delivery.messages m JOIN campaign.subscribers s ON s.id = m.subscriber_id
            WHERE m.status = 'queued' AND m.campaign_id IS NOT NULL
              AND ((m.channel = 'email' AND NOT s.email_subscribed) OR (m.channel = 'sms' AND NOT s.sms_subscribed)
            OR (m.channel = 'whatsapp' AND NOT s.whatsapp_subscribed)
            OR (m.channel = 'push' AND s.push_unsubscribed_at IS NOT NULL) OR s.status <> 'active')
            """, needsReview: false, risk: "low")),
      DataCheck(
        check: "sync.count_mismatch", component: "sync", severity: .medium, category: .sync, object: "sync.records",
        query: """
          SELECT j.name || '/' || x.record_id, NULL::text
          FROM sync.jobs j
          JOIN LATERAL (
            SELECT sweep_id, started_at FROM sync.runs WHERE job_id = j.id AND full_sync AND NOT dry_run AND status = 'succeeded'
            ORDER BY started_at DESC LIMIT 1
          ) r ON true
          JOIN sync.records x ON x.job_id = j.id AND x.deleted_at IS NULL
          WHERE x.last_seen_sweep IS DISTINCT FROM r.sweep_id AND x.synced_at < r.started_at
          """,
        describe: {
          "\($0) records are linked locally but were not in the remote table at the last full sync, and were not soft-deleted (local count above remote)"
        },
        suggested: "start a full run of the job (POST /v1/sync/jobs/{id}/runs {\"full\": true}) and read its errors", repair: nil),
      DataCheck(
        check: "sync.stale_run", component: "sync", severity: .medium, category: .sync, object: "sync.runs",
        query: "SELECT id::text, NULL::text FROM sync.runs WHERE status = 'running' AND heartbeat_at < now() - interval '10 minutes'",
        describe: { "\($0) sync runs are marked running but have not saved progress for 10 minutes (their process stopped)" },
        suggested: "start a run of the job: it resumes the stopped one from its checkpoint", repair: nil),
    ]
  }
}

/// gRPC health and latency of every back-end (SPEC §6: a service down is CRITICAL).
struct HealthCheck: Sendable {
  let clients: [String: GRPCClient<HTTP2ClientTransport.Posix>]
  let slow: Duration

  func run() async -> [Finding] {
    await withTaskGroup(of: Finding?.self) { group in
      for (name, client) in clients {
        group.addTask { await Self.check(name, client: client, slow: slow) }
      }
      var findings: [Finding] = []
      for await finding in group { if let finding { findings.append(finding) } }
      return findings.sorted { $0.affectedObject < $1.affectedObject }
    }
  }

  static func check(_ name: String, client: GRPCClient<HTTP2ClientTransport.Posix>, slow: Duration) async -> Finding? {
    func finding(_ check: String, _ severity: Finding.Severity, _ description: String, suggested: String) -> Finding {
      Finding(
        check: check, component: "health", severity: severity, category: .service, description: description,
        affectedObject: "service \(name)", count: 1, sampleKeys: [], suggestedRepair: suggested, repair: nil)
    }
    let clock = ContinuousClock()
    let start = clock.now
    let answer: Grpc_Health_V1_HealthCheckResponse
    do {
      answer = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init(), options: .timeout(.seconds(3)))
    } catch {
      return finding(
        "service.down", .critical, "\(name) does not answer its health check (\(RPCError.describe(error)))",
        suggested: "restart it and read its log")
    }
    let elapsed = clock.now - start
    guard answer.status == .serving else {
      return finding(
        "service.down", .critical, "\(name) answers \(answer.status) (not serving: its database or a dependency is down)",
        suggested: "read its log")
    }
    guard elapsed <= slow else {
      return finding(
        "service.slow", .low, "\(name) took \(Int(elapsed.milliseconds.rounded())) ms to answer a health check",
        suggested: "look at its load and its database")
    }
    return nil
  }
}
