import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// Campaigns (SPEC §2): creation with their variants, reads with their outbox counts, the status
/// machine's transitions and the audience expansion that starts a send.
extension CampaignStore {
  static let campaignColumns = """
    c.id, c.name, c.channel, c.list_id, c.segment_id, c.budget_cents, c.track_opens, c.track_clicks, c.sms_quiet_hours, c.status,
    c.status_reason, c.send_at,
    c.audience_count, c.skipped_no_consent, c.created_at, c.started_at, c.finished_at
    """

  package func createCampaign(_ campaign: NewCampaign) async throws -> CampaignRecord {
    let id = try await transaction { connection in
      if let list = campaign.listID {
        let found = try await connection.query("SELECT 1 FROM campaign.lists WHERE id = \(list)", logger: logger).collect()
        guard !found.isEmpty else { throw Self.notFound("list", list, field: "list_id") }
      }
      if let segment = campaign.segmentID {
        let found = try await connection.query("SELECT 1 FROM campaign.segments WHERE id = \(segment)", logger: logger).collect()
        guard !found.isEmpty else { throw Self.notFound("segment", segment, field: "segment_id") }
      }
      let single = campaign.variants.count == 1
      for (index, variant) in campaign.variants.enumerated() {
        let field = single ? "template_id" : "variants[\(index)].template_id"
        let channel = try await connection.query(
          "SELECT channel FROM campaign.templates WHERE id = \(variant.templateID)", logger: logger
        ).collect().first?.decode(String.self)
        guard let channel else { throw Self.notFound("template", variant.templateID, field: field) }
        guard channel == campaign.channel else {
          throw RPCError.field(
            field, .invalidArgument,
            "template \(variant.templateID.lowercasedString) is for \(channel), the campaign is \(campaign.channel)")
        }
      }
      let row = try await connection.query(
        """
        INSERT INTO campaign.campaigns (
          name, channel, list_id, segment_id, budget_cents, track_opens, track_clicks, sms_quiet_hours)
        VALUES (\(campaign.name), \(campaign.channel), \(campaign.listID), \(campaign.segmentID), \(campaign.budgetCents),
          \(campaign.trackOpens), \(campaign.trackClicks), \(campaign.quietHours))
        RETURNING id
        """, logger: logger
      ).collect().first
      guard let id = try row?.decode(UUID.self) else { throw PostgresError.protocol("no row returned") }
      for (position, variant) in campaign.variants.enumerated() {
        try await connection.query(
          """
          INSERT INTO campaign.campaign_variants (campaign_id, position, name, template_id, weight)
          VALUES (\(id), \(position), \(variant.name), \(variant.templateID), \(variant.weight))
          """, logger: logger)
      }
      if let test = campaign.abTest {
        try await connection.query(
          """
          INSERT INTO campaign.ab_tests (campaign_id, test_basis_points, wait_seconds, metric, confidence_basis_points, fallback)
          VALUES (\(id), \(test.testBasisPoints), \(test.waitSeconds), \(test.metric), \(test.confidenceBasisPoints), \(test.fallback))
          """, logger: logger)
      }
      return id
    }
    return try await self.campaign(id: id)
  }

  /// NOT_FOUND naming `field` when no campaign has the id.
  /// The campaign's channel; nil when there is no such campaign.
  func campaignChannel(_ id: UUID) async throws -> String? {
    try await client.query("SELECT channel FROM campaign.campaigns WHERE id = \(id)", logger: logger).decode(String.self)
      .elements().first
  }

  package func campaign(id: UUID, field: String = "id") async throws -> CampaignRecord {
    guard let record = try await campaigns(id: id).first else { throw Self.notFound("campaign", id, field: field) }
    return record
  }

  package func campaigns(id: UUID? = nil, status: String? = nil) async throws -> [CampaignRecord] {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.campaignColumns) FROM campaign.campaigns c
      WHERE (\(id)::uuid IS NULL OR c.id = \(id)) AND (\(status)::text IS NULL OR c.status = \(status))
      ORDER BY c.created_at, c.id
      """, logger: logger
    ).collect()
    var campaigns = try rows.map(Self.campaignRecord)
    guard !campaigns.isEmpty else { return [] }
    let ids = campaigns.map(\.id)
    var variants: [UUID: [VariantRecord]] = [:]
    for try await (campaign, name, template, weight, recipients) in try await client.query(
      """
      SELECT campaign_id, name, template_id, weight, recipients FROM campaign.campaign_variants
      WHERE campaign_id = ANY(\(ids)::uuid[]) ORDER BY campaign_id, position
      """, logger: logger
    ).decode((UUID, String, UUID, Int, Int64).self) {
      variants[campaign, default: []].append(VariantRecord(name: name, templateID: template, weight: weight, recipients: recipients))
    }
    // Entries by status: each chunk's entries take its status, less those settled on their own
    // (which count under their own status).
    var outbox: [UUID: [String: Int64]] = [:]
    for try await (campaign, status, count) in try await client.query(
      """
      SELECT campaign_id, status, sum(entries - exceptions)::int8 FROM campaign.outbox_chunks
      WHERE campaign_id = ANY(\(ids)::uuid[]) GROUP BY campaign_id, status
      UNION ALL
      SELECT campaign_id, status, count(*) FROM campaign.outbox
      WHERE campaign_id = ANY(\(ids)::uuid[]) AND status IS NOT NULL GROUP BY campaign_id, status
      """, logger: logger
    ).decode((UUID, String, Int64).self) {
      outbox[campaign, default: [:]][status, default: 0] += count
    }
    let tests = try await abTests(of: ids)
    for index in campaigns.indices {
      campaigns[index].variants = variants[campaigns[index].id] ?? []
      campaigns[index].outbox = outbox[campaigns[index].id] ?? [:]
      campaigns[index].abTest = tests[campaigns[index].id]
    }
    return campaigns
  }

  static func campaignRecord(_ row: PostgresRow) throws -> CampaignRecord {
    let cells = row.makeRandomAccess()
    return CampaignRecord(
      id: try cells["id"].decode(UUID.self),
      name: try cells["name"].decode(String.self),
      channel: try cells["channel"].decode(String.self),
      listID: try cells["list_id"].decode(UUID?.self),
      segmentID: try cells["segment_id"].decode(UUID?.self),
      variants: [],
      budgetCents: try cells["budget_cents"].decode(Int64?.self),
      trackOpens: try cells["track_opens"].decode(Bool.self),
      trackClicks: try cells["track_clicks"].decode(Bool.self),
      quietHours: try cells["sms_quiet_hours"].decode(String?.self),
      status: try cells["status"].decode(String.self),
      statusReason: try cells["status_reason"].decode(String.self),
      sendAt: try cells["send_at"].decode(Date?.self),
      audience: try cells["audience_count"].decode(Int64.self),
      skippedAtExpansion: try cells["skipped_no_consent"].decode(Int64.self),
      outbox: [:],
      createdAt: try cells["created_at"].decode(Date.self),
      startedAt: try cells["started_at"].decode(Date?.self),
      finishedAt: try cells["finished_at"].decode(Date?.self))
  }

  // MARK: The status machine (draft → scheduled → sending → sent | paused | cancelled | failed)

  /// draft → scheduled, to start at `sendAt`.
  package func scheduleCampaign(_ id: UUID, at sendAt: Date) async throws -> CampaignRecord {
    try await transition(id, action: "schedule", from: ["draft"]) { connection, _ in
      try await connection.query(
        "UPDATE campaign.campaigns SET status = 'scheduled', send_at = \(sendAt), updated_at = now() WHERE id = \(id)",
        logger: logger)
    }
  }

  /// draft or scheduled → sending, now (see `start`). A channel without a provider, or an e-mail
  /// campaign that cannot give each recipient a way out (`optOutProblem`), is refused
  /// (FAILED_PRECONDITION naming the field) and the campaign stays as it was.
  /// `served`: the channels delivery has an enabled provider for (nil: not checked).
  package func sendCampaign(_ id: UUID, canSignLinks: Bool, served: Set<String>? = nil) async throws -> CampaignRecord {
    try await transition(id, action: "send", from: ["draft", "scheduled"]) { connection, campaign in
      if let problem = Self.providerProblem(campaign.channel, served: served) {
        throw RPCError.field("channel", .failedPrecondition, problem)
      }
      if let problem = try await optOutProblem(of: campaign, canSignLinks: canSignLinks, on: connection) {
        throw RPCError.field(problem.field, .failedPrecondition, problem.message)
      }
      try await start(campaign, on: connection)
    }
  }

  /// Why an e-mail campaign cannot go out as the law and the mailbox providers want it: without a
  /// key there are no signed unsubscribe links (List-Unsubscribe, `{{unsubscribe_url}}`); a
  /// variant's template whose body shows no way out is named. nil for other channels.
  func optOutProblem(
    of campaign: CampaignRecord, canSignLinks: Bool, on connection: PostgresConnection
  ) async throws -> (field: String, message: String)? {
    guard campaign.channel == "email" else { return nil }
    guard canSignLinks else {
      return (
        "channel",
        "HERALD_SECRETS_KEY is not set: campaign e-mail needs it to sign each recipient's unsubscribe link (List-Unsubscribe, {{unsubscribe_url}})"
      )
    }
    let rows = try await connection.query(
      """
      SELECT t.name, t.channel, t.format, t.subject, t.body, t.variables::text, t.content::text
      FROM campaign.campaign_variants v JOIN campaign.templates t ON t.id = v.template_id
      WHERE v.campaign_id = \(campaign.id) ORDER BY v.name
      """, logger: logger
    ).collect()
    for row in rows {
      let (name, channel, format, subject, body, variablesJSON, content) = try row.decode(
        (String, String, String, String, String, String, String?).self)
      let template = try Self.storedTemplate(
        channel: channel, format: format, subject: subject, body: body, variablesJSON: variablesJSON, contentJSON: content,
        what: "template '\(name)'")
      if !template.showsOptOut {
        return (
          "template_id",
          "template '\(name)' shows no way to unsubscribe: put {{unsubscribe_url}} or {{preferences_url}} in its body (declared as a variable); CAN-SPAM asks for a visible opt-out in every campaign e-mail"
        )
      }
    }
    return nil
  }

  /// sending → paused: the relay leaves its chunks alone until it is resumed. A sent campaign
  /// (everything handed to delivery, which may still be sending it) can be paused too: delivery
  /// holds what it has not sent (`CampaignHoldSync`).
  package func pauseCampaign(_ id: UUID) async throws -> CampaignRecord {
    try await transition(id, action: "pause", from: ["sending", "sent"]) { connection, _ in
      try await setStatus(id, to: "paused", on: connection)
    }
  }

  /// paused → sending.
  package func resumeCampaign(_ id: UUID) async throws -> CampaignRecord {
    try await transition(id, action: "resume", from: ["paused"]) { connection, _ in
      try await setStatus(id, to: "sending", on: connection)
    }
  }

  /// Anything but cancelled or failed → cancelled, with the chunks the relay has not relayed (the
  /// update waits for a chunk the relay holds, so nothing it has not relayed is sent afterwards)
  /// and, through `CampaignHoldSync`, the messages delivery has not sent (also of a sent campaign).
  package func cancelCampaign(_ id: UUID) async throws -> CampaignRecord {
    try await transition(id, action: "cancel", from: ["draft", "scheduled", "sending", "paused", "sent"]) { connection, _ in
      try await connection.query(
        "UPDATE campaign.outbox_chunks SET status = 'cancelled' WHERE campaign_id = \(id) AND status = 'pending'", logger: logger)
      try await setStatus(id, to: "cancelled", on: connection)
    }
  }

  /// Locks a campaign, checks that `action` is legal from its status (FAILED_PRECONDITION naming
  /// the status otherwise) and applies it, all in one transaction; returns the campaign after it.
  private func transition(
    _ id: UUID, action: String, from allowed: [String],
    _ apply: @escaping @Sendable (PostgresConnection, CampaignRecord) async throws -> Void
  ) async throws -> CampaignRecord {
    try await transaction { connection in
      let row = try await connection.query(
        "SELECT \(unescaped: Self.campaignColumns) FROM campaign.campaigns c WHERE c.id = \(id) FOR UPDATE", logger: logger
      ).collect().first
      guard let row else { throw Self.notFound("campaign", id) }
      let record = try Self.campaignRecord(row)
      guard allowed.contains(record.status) else {
        throw RPCError.field(
          "status", .failedPrecondition,
          "campaign \(id.lowercasedString) is \(record.status); \(action) needs it to be \(Self.alternatives(allowed))")
      }
      try await apply(connection, record)
    }
    return try await campaign(id: id)
  }

  /// `a`, `a or b`, `a, b or c`.
  static func alternatives(_ values: [String]) -> String {
    guard values.count > 1, let last = values.last else { return values.first ?? "" }
    return values.dropLast().joined(separator: ", ") + " or " + last
  }

  /// Sets a locked campaign's status (and its finish time when the status is final). A pause, a
  /// resume and a cancel are for delivery to hear of too (`CampaignHoldSync`).
  func setStatus(_ id: UUID, to status: String, reason: String = "", on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE campaign.campaigns SET status = \(status), status_reason = \(reason), updated_at = now(),
        finished_at = CASE WHEN \(status) IN ('sent', 'cancelled', 'failed') THEN now() ELSE finished_at END,
        delivery_pending = delivery_pending OR (\(status) IN ('paused', 'cancelled') AND status IN ('sending', 'sent', 'paused'))
          OR (status = 'paused' AND \(status) = 'sending')
      WHERE id = \(id)
      """, logger: logger)
  }

  /// Campaigns whose pause, resume or cancel delivery has not heard of yet, oldest change first:
  /// id, status and its reason.
  package func campaignsPendingDelivery(limit: Int) async throws -> [(id: UUID, status: String, reason: String)] {
    try await client.query(
      """
      SELECT id, status, status_reason FROM campaign.campaigns WHERE delivery_pending ORDER BY updated_at LIMIT \(limit)
      """, logger: logger
    ).decode((UUID, String, String).self).elements().map { (id: $0.0, status: $0.1, reason: $0.2) }
  }

  /// Locks the marked campaign changed longest ago (skipping those another replica holds), runs
  /// `tell` with its id, status and reason, and clears its mark, all in one transaction (a
  /// transition of it waits meanwhile). false when none is marked.
  package func withNextPendingDelivery(
    _ tell: @escaping @Sendable ((id: UUID, status: String, reason: String)) async throws -> Void
  ) async throws -> Bool {
    try await transaction { connection in
      let row = try await connection.query(
        """
        SELECT id, status, status_reason FROM campaign.campaigns WHERE delivery_pending
        ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED
        """, logger: logger
      ).decode((UUID, String, String).self).elements().first
      guard let (id, status, reason) = row else { return false }
      try await tell((id, status, reason))
      try await connection.query("UPDATE campaign.campaigns SET delivery_pending = false WHERE id = \(id)", logger: logger)
      return true
    }
  }

  /// Starts a locked draft or scheduled campaign: expands its audience into the outbox and cuts
  /// it into the relay's chunks (one statement, streamed inside PostgreSQL, so memory stays
  /// flat), assigns A/B variants by a deterministic hash of (campaign, subscriber), counts who
  /// was skipped for lack of consent and marks it sending. A campaign with an A/B test writes
  /// only its test share (another hash) and is decided at `decide_at` (`decideABTest`). Callers
  /// hold the campaign's row lock and commit with it.
  func start(_ campaign: CampaignRecord, on connection: PostgresConnection) async throws {
    var builder = SQLBuilder()
    let audience = try await audiencePredicate(of: campaign, builder: &builder, on: connection)
    let variants = try await connection.query(
      "SELECT name, weight FROM campaign.campaign_variants WHERE campaign_id = \(campaign.id) ORDER BY position", logger: logger
    ).collect().map { try $0.decode((String, Int).self) }
    guard let last = variants.last else { throw RPCError(code: .dataLoss, message: "campaign \(campaign.id) has no variants") }
    let total = variants.reduce(0) { $0 + $1.1 }
    var cases = ""
    var cumulative = 0
    for (name, weight) in variants.dropLast() {
      cumulative += weight
      cases += " WHEN a.bucket < \(builder.bind(cumulative)) THEN \(builder.bind(name))"
    }
    let assignment = cases.isEmpty ? builder.bind(last.0) : "CASE\(cases) ELSE \(builder.bind(last.0)) END"
    let consent = Self.consentSQL(campaign.channel)
    let seed = Self.seed(of: campaign.id)
    // An A/B test's share: a second hash, independent of the one that picks the variant.
    let test = try await abTestSettings(of: campaign.id, on: connection)
    let testShare =
      if let test {
        "mod(hashtextextended(s.id::text, \(builder.bind(~seed))) & 9223372036854775807, 10000) < \(builder.bind(test.testBasisPoints))"
      } else {
        "true"
      }
    let campaignBind = builder.bind(campaign.id)
    let sql = """
      WITH audience AS (
        SELECT s.id, (s.status = 'active' AND \(consent)) AS eligible, \(testShare) AS in_test,
          mod(hashtextextended(s.id::text, \(builder.bind(seed))) & 9223372036854775807, \(builder.bind(Int64(total)))) AS bucket
        FROM campaign.subscribers s WHERE s.status <> 'erased' AND (\(audience))
      ), \(Self.outboxWrite(
        campaign: campaignBind, entries: "SELECT a.id, \(assignment) FROM audience a WHERE a.eligible AND a.in_test",
        wave: "0", firstChunk: "0", skipExisting: false))
      SELECT 'audience', count(*) FROM audience
      UNION ALL SELECT 'eligible', count(*) FROM audience WHERE eligible
      UNION ALL SELECT 'variant:' || variant, count(*) FROM written GROUP BY variant
      """
    var counts: [String: Int64] = [:]
    for try await (key, count) in try await connection.query(builder.query(sql), logger: logger).decode((String, Int64).self) {
      counts[key] = count
    }
    let audienceCount = counts["audience"] ?? 0
    let eligible = counts["eligible"] ?? 0
    for (name, _) in variants {
      try await connection.query(
        """
        UPDATE campaign.campaign_variants SET recipients = \(counts["variant:" + name] ?? 0)
        WHERE campaign_id = \(campaign.id) AND name = \(name)
        """, logger: logger)
    }
    try await connection.query(
      """
      UPDATE campaign.campaigns SET status = 'sending', status_reason = '', started_at = now(), updated_at = now(),
        audience_count = \(audienceCount), skipped_no_consent = \(audienceCount - eligible)
      WHERE id = \(campaign.id)
      """, logger: logger)
    if let test {
      try await connection.query(
        """
        UPDATE campaign.ab_tests SET decide_at = now() + make_interval(secs => \(test.waitSeconds))
        WHERE campaign_id = \(campaign.id)
        """, logger: logger)
    }
  }

  /// The `written`, `numbered` and `chunks` CTEs of an expansion: `entries` (a SELECT of subscriber
  /// id and variant) written to the campaign's outbox as `wave` in subscriber order (so its indexes
  /// grow at their right edge; with `skipExisting`, entries already there are left alone) and cut
  /// into the relay's chunks of consecutive entries, numbered from `firstChunk`. The arguments
  /// are bind names or SQL built with binds.
  static func outboxWrite(campaign: String, entries: String, wave: String, firstChunk: String, skipExisting: Bool) -> String {
    """
    written AS (
      INSERT INTO campaign.outbox (campaign_id, subscriber_id, variant, wave)
      SELECT \(campaign), e.id, e.variant, \(wave) FROM (\(entries)) AS e(id, variant)
      ORDER BY e.id\(skipExisting ? " ON CONFLICT (campaign_id, subscriber_id) DO NOTHING" : "")
      RETURNING subscriber_id, variant
    ), numbered AS (
      SELECT subscriber_id, row_number() OVER (ORDER BY subscriber_id) - 1 AS n, count(*) OVER () AS total FROM written
    ), chunks AS (
      INSERT INTO campaign.outbox_chunks (campaign_id, chunk, first_subscriber, next_subscriber, entries, wave)
      SELECT \(campaign), \(firstChunk) + n / \(OutboxRelay.chunkSize), subscriber_id, lead(subscriber_id) OVER (ORDER BY n),
        least(\(OutboxRelay.chunkSize), total - n), \(wave)
      FROM numbered WHERE n % \(OutboxRelay.chunkSize) = 0
    )
    """
  }

  /// The SQL condition on subscribers `s` that puts them in the campaign's audience (its list's
  /// members, or its segment's conditions), with its values bound in `builder`.
  func audiencePredicate(of campaign: CampaignRecord, builder: inout SQLBuilder, on connection: PostgresConnection) async throws -> String {
    if let list = campaign.listID {
      return "EXISTS (SELECT 1 FROM campaign.list_members m WHERE m.list_id = \(builder.bind(list)) AND m.subscriber_id = s.id)"
    } else if let segment = campaign.segmentID {
      let row = try await connection.query(
        "SELECT match, conditions::text FROM campaign.segments WHERE id = \(segment)", logger: logger
      ).collect().first
      guard let (match, conditionsJSON) = try row?.decode((String, String).self) else {
        throw Self.notFound("segment", segment, field: "segment_id")
      }
      let conditions = try Self.storedConditions(conditionsJSON, of: segment)
      let predicate: String
      (predicate, builder) = try Self.predicate(match: match, conditions: conditions, builder: builder)
      return predicate
    }
    throw RPCError(code: .dataLoss, message: "campaign \(campaign.id) has no audience")
  }

  /// The campaign's hash seed (its id's first eight bytes): a subscriber's variant bucket.
  static func seed(of campaign: UUID) -> Int64 {
    let seed = campaign.uuid
    return Int64(
      bitPattern: UInt64(seed.0) << 56 | UInt64(seed.1) << 48 | UInt64(seed.2) << 40 | UInt64(seed.3) << 32
        | UInt64(seed.4) << 24 | UInt64(seed.5) << 16 | UInt64(seed.6) << 8 | UInt64(seed.7))
  }

  /// How many campaigns are in each status, for the metrics scrape. A campaign is one row per
  /// send (thousands, not millions), so counting them all is cheap.
  package func campaignCountsByStatus() async throws -> [String: Int64] {
    var counts: [String: Int64] = [:]
    for try await (status, count) in try await client.query(
      "SELECT status, count(*) FROM campaign.campaigns GROUP BY status", logger: logger
    ).decode((String, Int64).self) {
      counts[status] = count
    }
    return counts
  }
}
