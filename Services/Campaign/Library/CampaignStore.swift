import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

package struct AudienceCounts: Sendable, Equatable {
  package var subscribers: Int64
  package var emailSubscribed: Int64
  package var smsSubscribed: Int64
}

package struct ListRecord: Sendable {
  package var id: UUID
  package var name: String
  package var description: String
  package var createdAt: Date
  package var counts: AudienceCounts
}

package struct SegmentRecord: Sendable {
  package var id: UUID
  package var name: String
  package var match: String
  package var conditions: [SegmentCondition]
  package var createdAt: Date
  package var counts: AudienceCounts
}

package struct TemplateRecord: Sendable {
  package var id: UUID
  package var name: String
  package var template: MessageTemplate
  package var createdAt: Date
}

package struct VariantRecord: Sendable, Equatable {
  package var name: String
  package var templateID: UUID
  package var weight: Int
  package var recipients: Int64
}

package struct NewCampaign: Sendable {
  package var name: String
  package var channel: String
  package var listID: UUID?
  package var segmentID: UUID?
  package var variants: [VariantRecord]
  package var budgetCents: Int64?
}

package struct CampaignRecord: Sendable {
  package var id: UUID
  package var name: String
  package var channel: String
  package var listID: UUID?
  package var segmentID: UUID?
  package var variants: [VariantRecord]
  package var budgetCents: Int64?
  package var status: String
  package var statusReason: String
  package var sendAt: Date?
  package var audience: Int64
  package var skippedAtExpansion: Int64
  /// Outbox entries by status (pending, relayed, skipped, failed, cancelled).
  package var outbox: [String: Int64]
  package var createdAt: Date
  package var startedAt: Date?
  package var finishedAt: Date?
}

/// Lists, segments, templates and campaigns in the `campaign` schema. Errors that callers can act
/// on are thrown as RPC errors naming the field.
package struct CampaignStore: Sendable {
  /// Channels a campaign can be sent on today; the others are refused at send time (SPEC §2).
  package static let deliverableChannels: Set<String> = ["email", "sms"]
  package static let maxMembersPerCall = 1000

  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// A transaction whose closure errors come back as thrown (not wrapped).
  func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
    do {
      return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
    } catch let error as PostgresTransactionError {
      if let closureError = error.closureError, closureError.postgresError == nil { throw closureError }
      throw error
    }
  }

  static func duplicateName(_ kind: String, _ name: String) -> RPCError {
    RPCError.field("name", .alreadyExists, "a \(kind) named '\(name)' already exists")
  }

  static func notFound(_ kind: String, _ id: UUID, field: String = "id") -> RPCError {
    RPCError.field(field, .notFound, "no \(kind) has id \(id.lowercasedString)")
  }

  // MARK: Lists

  package func createList(name: String, description: String) async throws -> ListRecord {
    do {
      let row = try await client.query(
        """
        INSERT INTO campaign.lists (name, description) VALUES (\(name), \(description))
        RETURNING id, created_at
        """, logger: logger
      ).collect().first
      guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
      return ListRecord(id: id, name: name, description: description, createdAt: createdAt, counts: .init(subscribers: 0, emailSubscribed: 0, smsSubscribed: 0))
    } catch where error.sqlState == "23505" {
      throw Self.duplicateName("list", name)
    }
  }

  static let countColumns = """
    count(*) FILTER (WHERE s.status <> 'erased'),
    count(*) FILTER (WHERE s.status = 'active' AND s.email_subscribed),
    count(*) FILTER (WHERE s.status = 'active' AND s.sms_subscribed)
    """

  package func lists(id: UUID? = nil) async throws -> [ListRecord] {
    let rows = try await client.query(
      """
      SELECT l.id, l.name, l.description, l.created_at, c.* FROM campaign.lists l
      CROSS JOIN LATERAL (
        SELECT \(unescaped: Self.countColumns)
        FROM campaign.list_members m JOIN campaign.subscribers s ON s.id = m.subscriber_id WHERE m.list_id = l.id
      ) c
      WHERE \(id)::uuid IS NULL OR l.id = \(id)
      ORDER BY l.created_at, l.id
      """, logger: logger)
    var lists: [ListRecord] = []
    for try await (id, name, description, createdAt, subscribers, email, sms) in rows.decode(
      (UUID, String, String, Date, Int64, Int64, Int64).self)
    {
      lists.append(
        ListRecord(
          id: id, name: name, description: description, createdAt: createdAt,
          counts: .init(subscribers: subscribers, emailSubscribed: email, smsSubscribed: sms)))
    }
    return lists
  }

  package func list(id: UUID, field: String = "id") async throws -> ListRecord {
    guard let list = try await lists(id: id).first else { throw Self.notFound("list", id, field: field) }
    return list
  }

  /// Adds or removes members in one transaction; all ids must name subscribers.
  package func changeMembers(listID: UUID, subscriberIDs: [UUID], add: Bool) async throws -> Int {
    let logger = self.logger
    return try await transaction { connection in
      let exists = try await connection.query(
        "SELECT 1 FROM campaign.lists WHERE id = \(listID) FOR SHARE", logger: logger
      ).collect().count == 1
      guard exists else { throw Self.notFound("list", listID, field: "list_id") }
      if add {
        let unknown = try await connection.query(
          """
          SELECT t.i FROM unnest(\(subscriberIDs)::uuid[]) WITH ORDINALITY AS t(id, i)
          WHERE NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = t.id) ORDER BY t.i LIMIT 1
          """, logger: logger
        ).collect().first?.decode(Int64.self)
        if let unknown {
          let index = Int(unknown) - 1
          throw Self.notFound("subscriber", subscriberIDs[index], field: "subscriber_ids[\(index)]")
        }
        return try await connection.query(
          """
          INSERT INTO campaign.list_members (list_id, subscriber_id)
          SELECT \(listID), id FROM unnest(\(subscriberIDs)::uuid[]) AS t(id) ON CONFLICT DO NOTHING RETURNING 1
          """, logger: logger
        ).collect().count
      }
      return try await connection.query(
        """
        DELETE FROM campaign.list_members WHERE list_id = \(listID) AND subscriber_id = ANY(\(subscriberIDs)::uuid[])
        RETURNING 1
        """, logger: logger
      ).collect().count
    }
  }

  // MARK: Segments

  /// Counts of the subscribers a predicate (over `campaign.subscribers s`) selects.
  private static func counts(
    predicate: String, builder: SQLBuilder, on connection: PostgresConnection, logger: Logger
  ) async throws -> AudienceCounts {
    let row = try await connection.query(
      builder.query("SELECT \(countColumns) FROM campaign.subscribers s WHERE \(predicate)"), logger: logger
    ).collect().first
    guard let (subscribers, email, sms) = try row?.decode((Int64, Int64, Int64).self) else {
      throw PostgresError.protocol("count gave no row")
    }
    return AudienceCounts(subscribers: subscribers, emailSubscribed: email, smsSubscribed: sms)
  }

  package func createSegment(name: String, match: String, conditions: [SegmentCondition]) async throws -> SegmentRecord {
    var builder = SQLBuilder()
    let compiled: (sql: String, lists: [UUID])
    do {
      compiled = try SegmentFilter.compile(match: match, conditions: conditions, into: &builder)
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    let encoded = String(decoding: try JSONEncoder().encode(conditions), as: UTF8.self)
    let logger = self.logger
    let predicate = builder
    do {
      return try await transaction { connection in
        for (index, list) in compiled.lists.enumerated() {
          let found = try await connection.query("SELECT 1 FROM campaign.lists WHERE id = \(list)", logger: logger).collect()
          guard !found.isEmpty else {
            let position = conditions.firstIndex { $0.field == "list" && UUID(text: Self.unquoted($0.valueJSON)) == list } ?? index
            throw Self.notFound("list", list, field: "conditions[\(position)].value")
          }
        }
        let counts = try await Self.counts(predicate: compiled.sql, builder: predicate, on: connection, logger: logger)
        let row = try await connection.query(
          """
          INSERT INTO campaign.segments (name, match, conditions) VALUES (\(name), \(match), \(encoded)::jsonb)
          RETURNING id, created_at
          """, logger: logger
        ).collect().first
        guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
        return SegmentRecord(id: id, name: name, match: match, conditions: conditions, createdAt: createdAt, counts: counts)
      }
    } catch where error.sqlState == "23505" {
      throw Self.duplicateName("segment", name)
    }
  }

  private static func unquoted(_ json: String) -> String {
    if case .string(let text) = JSONValue.parse(json) { return text }
    return json
  }

  package func segments(id: UUID? = nil) async throws -> [SegmentRecord] {
    let rows = try await client.query(
      """
      SELECT id, name, match, conditions::text, created_at FROM campaign.segments
      WHERE \(id)::uuid IS NULL OR id = \(id) ORDER BY created_at, id
      """, logger: logger
    ).collect()
    var segments: [SegmentRecord] = []
    for row in rows {
      let (id, name, match, conditionsJSON, createdAt) = try row.decode((UUID, String, String, String, Date).self)
      let conditions = try JSONDecoder().decode([SegmentCondition].self, from: Data(conditionsJSON.utf8))
      let (predicate, builder) = try Self.predicate(match: match, conditions: conditions)
      let logger = self.logger
      let counts = try await client.withConnection { connection in
        try await Self.counts(predicate: predicate, builder: builder, on: connection, logger: logger)
      }
      segments.append(SegmentRecord(id: id, name: name, match: match, conditions: conditions, createdAt: createdAt, counts: counts))
    }
    return segments
  }

  /// A stored segment's predicate. It was checked when saved, so an error here means the stored
  /// row was changed behind the service's back.
  static func predicate(match: String, conditions: [SegmentCondition], builder: SQLBuilder = SQLBuilder()) throws -> (String, SQLBuilder) {
    var builder = builder
    do {
      return (try SegmentFilter.compile(match: match, conditions: conditions, into: &builder).sql, builder)
    } catch {
      throw RPCError(code: .dataLoss, message: "a stored segment no longer compiles (\(error.field): \(error.message))")
    }
  }

  // MARK: Templates

  package func createTemplate(name: String, template: MessageTemplate) async throws -> TemplateRecord {
    let variables = String(decoding: try JSONEncoder().encode(template.variables), as: UTF8.self)
    do {
      let row = try await client.query(
        """
        INSERT INTO campaign.templates (name, channel, format, subject, body, variables)
        VALUES (\(name), \(template.channel), \(template.format), \(template.subject), \(template.body), \(variables)::jsonb)
        RETURNING id, created_at
        """, logger: logger
      ).collect().first
      guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
      return TemplateRecord(id: id, name: name, template: template, createdAt: createdAt)
    } catch where error.sqlState == "23505" {
      throw Self.duplicateName("template", name)
    }
  }

  package func templates(id: UUID? = nil, ids: [UUID]? = nil) async throws -> [TemplateRecord] {
    let rows = try await client.query(
      """
      SELECT id, name, channel, format, subject, body, variables::text, created_at FROM campaign.templates
      WHERE (\(id)::uuid IS NULL OR id = \(id)) AND (\(ids)::uuid[] IS NULL OR id = ANY(\(ids)::uuid[]))
      ORDER BY created_at, id
      """, logger: logger)
    var templates: [TemplateRecord] = []
    for try await (id, name, channel, format, subject, body, variablesJSON, createdAt) in rows.decode(
      (UUID, String, String, String, String, String, String, Date).self)
    {
      let variables = try JSONDecoder().decode([TemplateVariable].self, from: Data(variablesJSON.utf8))
      do {
        let template = try MessageTemplate(channel: channel, format: format, subject: subject, body: body, variables: variables)
        templates.append(TemplateRecord(id: id, name: name, template: template, createdAt: createdAt))
      } catch {
        throw RPCError(code: .dataLoss, message: "stored template \(id.lowercasedString) no longer parses: \(error.message)")
      }
    }
    return templates
  }

  package func template(id: UUID, field: String = "template_id") async throws -> TemplateRecord {
    guard let record = try await templates(id: id).first else { throw Self.notFound("template", id, field: field) }
    return record
  }

  // MARK: Campaigns

  static let campaignColumns = """
    c.id, c.name, c.channel, c.list_id, c.segment_id, c.budget_cents, c.status, c.status_reason, c.send_at,
    c.audience_count, c.skipped_no_consent, c.created_at, c.started_at, c.finished_at
    """

  package func createCampaign(_ campaign: NewCampaign) async throws -> CampaignRecord {
    let logger = self.logger
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
          throw RPCError.field(field, .invalidArgument, "template \(variant.templateID.lowercasedString) is for \(channel), the campaign is \(campaign.channel)")
        }
      }
      let row = try await connection.query(
        """
        INSERT INTO campaign.campaigns (name, channel, list_id, segment_id, budget_cents)
        VALUES (\(campaign.name), \(campaign.channel), \(campaign.listID), \(campaign.segmentID), \(campaign.budgetCents))
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
      return id
    }
    return try await self.campaign(id: id)
  }

  package func campaign(id: UUID) async throws -> CampaignRecord {
    guard let record = try await campaigns(id: id).first else { throw Self.notFound("campaign", id) }
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
    for index in campaigns.indices {
      campaigns[index].variants = variants[campaigns[index].id] ?? []
      campaigns[index].outbox = outbox[campaigns[index].id] ?? [:]
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

  /// Locks a campaign, checks that `action` is legal from its status (FAILED_PRECONDITION naming
  /// the status otherwise) and applies it, all in one transaction.
  package func transition(
    _ id: UUID, action: String, from allowed: [String],
    _ apply: @escaping @Sendable (PostgresConnection, CampaignRecord) async throws -> Void
  ) async throws -> CampaignRecord {
    let logger = self.logger
    try await transaction { connection in
      let row = try await connection.query(
        "SELECT \(unescaped: Self.campaignColumns) FROM campaign.campaigns c WHERE c.id = \(id) FOR UPDATE", logger: logger
      ).collect().first
      guard let row else { throw Self.notFound("campaign", id) }
      let record = try Self.campaignRecord(row)
      guard allowed.contains(record.status) else {
        let from = allowed.count == 1 ? allowed[0] : allowed.dropLast().joined(separator: ", ") + " or " + allowed.last!
        throw RPCError.field(
          "status", .failedPrecondition, "campaign \(id.lowercasedString) is \(record.status); \(action) needs it to be \(from)")
      }
      try await apply(connection, record)
    }
    return try await campaign(id: id)
  }

  static func setStatus(
    _ id: UUID, to status: String, reason: String = "", on connection: PostgresConnection, logger: Logger
  ) async throws {
    try await connection.query(
      """
      UPDATE campaign.campaigns SET status = \(status), status_reason = \(reason), updated_at = now(),
        finished_at = CASE WHEN \(status) IN ('sent', 'cancelled', 'failed') THEN now() ELSE finished_at END
      WHERE id = \(id)
      """, logger: logger)
  }

  /// Starts a locked draft or scheduled campaign: expands its audience into the outbox and cuts
  /// it into the relay's chunks (one statement, streamed inside PostgreSQL, so memory stays
  /// flat), assigns A/B variants by a
  /// deterministic hash of (campaign, subscriber), counts who was skipped for lack of consent and
  /// marks it sending. Callers hold the campaign's row lock and commit with it.
  static func start(_ campaign: CampaignRecord, on connection: PostgresConnection, logger: Logger) async throws {
    var builder = SQLBuilder()
    let audience: String
    if let list = campaign.listID {
      audience = "EXISTS (SELECT 1 FROM campaign.list_members m WHERE m.list_id = \(builder.bind(list)) AND m.subscriber_id = s.id)"
    } else if let segment = campaign.segmentID {
      let row = try await connection.query(
        "SELECT match, conditions::text FROM campaign.segments WHERE id = \(segment)", logger: logger
      ).collect().first
      guard let (match, conditionsJSON) = try row?.decode((String, String).self) else {
        throw notFound("segment", segment, field: "segment_id")
      }
      let conditions = try JSONDecoder().decode([SegmentCondition].self, from: Data(conditionsJSON.utf8))
      (audience, builder) = try predicate(match: match, conditions: conditions, builder: builder)
    } else {
      throw RPCError(code: .dataLoss, message: "campaign \(campaign.id) has no audience")
    }
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
    let consent = campaign.channel == "email" ? "s.email_subscribed" : "s.sms_subscribed"
    let seed = campaign.id.uuid
    let seedValue = Int64(bitPattern: UInt64(seed.0) << 56 | UInt64(seed.1) << 48 | UInt64(seed.2) << 40 | UInt64(seed.3) << 32
      | UInt64(seed.4) << 24 | UInt64(seed.5) << 16 | UInt64(seed.6) << 8 | UInt64(seed.7))
    let campaignBind = builder.bind(campaign.id)
    let sql = """
      WITH audience AS (
        SELECT s.id, (s.status = 'active' AND \(consent)) AS eligible,
          mod(hashtextextended(s.id::text, \(builder.bind(seedValue))) & 9223372036854775807, \(builder.bind(Int64(total)))) AS bucket
        FROM campaign.subscribers s WHERE s.status <> 'erased' AND (\(audience))
      ), written AS (
        INSERT INTO campaign.outbox (campaign_id, subscriber_id, variant)
        SELECT \(campaignBind), a.id, \(assignment) FROM audience a WHERE a.eligible
        ORDER BY a.id  -- in key order, the outbox's indexes grow at their right edge
        RETURNING subscriber_id, variant
      ), numbered AS (
        SELECT subscriber_id, row_number() OVER (ORDER BY subscriber_id) - 1 AS n, count(*) OVER () AS total FROM written
      ), chunks AS (
        INSERT INTO campaign.outbox_chunks (campaign_id, chunk, first_subscriber, next_subscriber, entries)
        SELECT \(campaignBind), n / \(OutboxRelay.chunkSize), subscriber_id, lead(subscriber_id) OVER (ORDER BY n),
          least(\(OutboxRelay.chunkSize), total - n)
        FROM numbered WHERE n % \(OutboxRelay.chunkSize) = 0
      )
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
  }
}
