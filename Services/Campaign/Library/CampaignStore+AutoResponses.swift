import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// An answer given or skipped, as `campaign.auto_responses` keeps it.
package struct AutoResponseRecord: Sendable, Equatable {
  package var id: UUID
  package var ruleID: UUID
  package var inboundID: UUID
  package var subscriberID: UUID?
  package var recipient: String
  package var status: String
  package var detail: String
  package var messageID: UUID?
  package var createdAt: Date
}

/// Auto-response rules and the answers given (SPEC §11). The answers are written in the inbound
/// consumer's transaction (`InboundFeedConsumer`).
extension CampaignStore {
  static let ruleColumns = """
    id, name, channel, trigger, pattern, campaign_id, subject, body, variables::text, delay_seconds, cooldown_seconds,
    daily_cap, priority, enabled, created_at
    """

  static func rule(_ row: PostgresRow) throws -> AutoResponseRule {
    let (id, name, channel, trigger, pattern, campaign, subject, body, variables, delay, cooldown, cap, priority, enabled, created) =
      try row.decode((UUID, String, String, String, String, UUID?, String, String, String, Int, Int, Int, Int, Bool, Date).self)
    return try AutoResponseRule(
      id: id, name: name, channel: channel, trigger: trigger, pattern: pattern, campaignID: campaign, subject: subject, body: body,
      variables: try JSONDecoder().decode([TemplateVariable].self, from: Data(variables.utf8)), delaySeconds: delay,
      cooldownSeconds: cooldown, dailyCap: cap, priority: priority, enabled: enabled, createdAt: created)
  }

  /// Stores a checked rule; `CampaignStoreError.duplicate(field: "name")` when the name is taken,
  /// nil when its campaign does not exist.
  package func createRule(_ rule: AutoResponseRule) async throws -> AutoResponseRule? {
    let variables = String(decoding: try JSONEncoder().encode(rule.variables), as: UTF8.self)
    do {
      let rows = try await client.query(
        """
        INSERT INTO campaign.auto_response_rules (
          id, name, channel, trigger, pattern, campaign_id, subject, body, variables, delay_seconds, cooldown_seconds, daily_cap,
          priority)
        SELECT \(rule.id), \(rule.name), \(rule.channel), \(rule.trigger), \(rule.pattern), \(rule.campaignID), \(rule.subject),
          \(rule.body), \(variables)::jsonb, \(rule.delaySeconds), \(rule.cooldownSeconds), \(rule.dailyCap), \(rule.priority)
        WHERE \(rule.campaignID)::uuid IS NULL OR EXISTS (SELECT 1 FROM campaign.campaigns WHERE id = \(rule.campaignID))
        RETURNING \(unescaped: Self.ruleColumns)
        """, logger: logger)
      return try await rows.collect().first.map(Self.rule)
    } catch  where error.sqlState == "23505" {
      throw CampaignStoreError.duplicate(field: "name")
    }
  }

  /// Every rule, in the order they are tried (priority, then oldest).
  package func rules(enabledOnly: Bool = false, on connection: PostgresConnection? = nil) async throws -> [AutoResponseRule] {
    let query: PostgresQuery = """
      SELECT \(unescaped: Self.ruleColumns) FROM campaign.auto_response_rules
      WHERE enabled OR NOT \(enabledOnly) ORDER BY priority, created_at, id
      """
    let rows =
      if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
    return try await rows.collect().map(Self.rule)
  }

  package func setRuleEnabled(_ id: UUID, _ enabled: Bool) async throws -> AutoResponseRule? {
    try await client.query(
      "UPDATE campaign.auto_response_rules SET enabled = \(enabled) WHERE id = \(id) RETURNING \(unescaped: Self.ruleColumns)",
      logger: logger
    ).collect().first.map(Self.rule)
  }

  package func deleteRule(_ id: UUID) async throws -> Bool {
    try await !client.query("DELETE FROM campaign.auto_response_rules WHERE id = \(id) RETURNING 1", logger: logger).collect()
      .isEmpty
  }

  /// Why `rule` may not answer `recipient` now (its cooldown, its daily cap), or nil; counts the
  /// answers of this transaction too.
  func holdBack(_ rule: AutoResponseRule, recipient: String, on connection: PostgresConnection) async throws -> String? {
    let rows = try await connection.query(
      """
      SELECT
        EXISTS (SELECT 1 FROM campaign.auto_responses WHERE rule_id = \(rule.id) AND recipient = \(recipient) AND status = 'queued'
          AND created_at > now() - \(rule.cooldownSeconds) * interval '1 second'),
        (SELECT count(*) FROM campaign.auto_responses WHERE rule_id = \(rule.id) AND status = 'queued'
          AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
      """, logger: logger)
    guard let (cooling, today) = try await rows.decode((Bool, Int64).self).elements().first else { return nil }
    if cooling { return "cooldown: rule \(rule.name) answered \(recipient) less than \(rule.cooldownSeconds) s ago" }
    if today >= rule.dailyCap { return "daily cap: rule \(rule.name) gave its \(rule.dailyCap) answers today (UTC)" }
    return nil
  }

  /// Records an answer or a skip; false when the inbound message has one already.
  func recordResponse(
    rule: UUID, inbound: UUID, subscriber: UUID?, recipient: String, status: String, detail: String,
    on connection: PostgresConnection
  ) async throws -> Bool {
    try await !connection.query(
      """
      INSERT INTO campaign.auto_responses (rule_id, inbound_id, subscriber_id, recipient, status, detail)
      VALUES (\(rule), \(inbound), \(subscriber), \(recipient), \(status), \(detail))
      ON CONFLICT (inbound_id) DO NOTHING
      RETURNING 1
      """, logger: logger
    ).collect().isEmpty
  }

  /// Turns a queued answer into a skip (delivery refused it).
  func skipResponse(inbound: UUID, detail: String, on connection: PostgresConnection) async throws {
    try await connection.query(
      "UPDATE campaign.auto_responses SET status = 'skipped', detail = \(detail) WHERE inbound_id = \(inbound)", logger: logger)
  }

  func setResponseMessages(_ messages: [(inbound: UUID, message: UUID)], on connection: PostgresConnection) async throws {
    guard !messages.isEmpty else { return }
    try await connection.query(
      """
      UPDATE campaign.auto_responses r SET message_id = t.message
      FROM unnest(\(messages.map(\.inbound))::uuid[], \(messages.map(\.message))::uuid[]) AS t(inbound, message)
      WHERE r.inbound_id = t.inbound
      """, logger: logger)
  }

  package func autoResponses(limit: Int) async throws -> [AutoResponseRecord] {
    var records: [AutoResponseRecord] = []
    let rows = try await client.query(
      """
      SELECT id, rule_id, inbound_id, subscriber_id, recipient, status, detail, message_id, created_at
      FROM campaign.auto_responses ORDER BY created_at DESC, id LIMIT \(limit)
      """, logger: logger)
    for try await (id, rule, inbound, subscriber, recipient, status, detail, message, created) in rows.decode(
      (UUID, UUID, UUID, UUID?, String, String, String, UUID?, Date).self)
    {
      records.append(
        AutoResponseRecord(
          id: id, ruleID: rule, inboundID: inbound, subscriberID: subscriber, recipient: recipient, status: status, detail: detail,
          messageID: message, createdAt: created))
    }
    return records
  }

  /// Campaign names by id.
  func campaignNames(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: String] {
    guard !ids.isEmpty else { return [:] }
    var names: [UUID: String] = [:]
    let rows = try await connection.query(
      "SELECT id, name FROM campaign.campaigns WHERE id = ANY(\(ids)::uuid[])", logger: logger)
    for try await (id, name) in rows.decode((UUID, String).self) { names[id] = name }
    return names
  }
}
