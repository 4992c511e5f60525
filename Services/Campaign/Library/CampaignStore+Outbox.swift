import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// A chunk of a campaign's outbox claimed by the relay: the entries from `firstSubscriber` up to
/// (not including) `nextSubscriber`, with what the relay needs of its campaign.
struct OutboxChunk: Sendable {
  var campaignID: UUID
  var chunk: Int32
  var firstSubscriber: UUID
  var nextSubscriber: UUID?
  /// 0: the campaign's send (or its A/B test's share); 1: the rest of an A/B test's audience.
  var wave: Int16 = 0
  var channel: String
  var budgetCents: Int64?
  /// The campaign's engagement tracking (SPEC §10).
  var trackOpens = false
  var trackClicks = false
  /// SMS: the campaign's delivery window, "HH:MM-HH:MM", when it has one.
  var quietHours: String?
}

/// An outbox entry and its subscriber as the relay reads them.
struct OutboxEntry: Sendable {
  var subscriberID: UUID
  var variant: String
  var active: Bool
  var consenting: Bool
  var email: String?
  var phone: String?
  /// Where the channel's message goes (`CampaignStore.addressSQL`).
  var address: String?
  var firstName: String
  var lastName: String
  /// The attributes the campaign's templates use, as text.
  var attributes: [String: String]
}

/// An outbox entry settled on its own, apart from its chunk: `skipped` or `failed`, with why.
struct SettledEntry: Sendable {
  var subscriberID: UUID
  var status: String
  var error: String
}

/// The outbox between the audience expansion and delivery: the relay's claim, read and settle of
/// a chunk, the end of a drained send, and the scheduler's claim of a due campaign. The methods
/// taking a connection run in the caller's transaction (`transaction`), which holds the claim.
extension CampaignStore {
  /// Claims the next pending chunk of a sending campaign with `FOR UPDATE SKIP LOCKED`, so
  /// replicas share the work; nil when there is none.
  func claimChunk(on connection: PostgresConnection) async throws -> OutboxChunk? {
    let claimed = try await connection.query(
      """
      SELECT k.campaign_id, k.chunk, k.first_subscriber, k.next_subscriber, k.wave, c.channel, c.budget_cents,
        c.track_opens, c.track_clicks, c.sms_quiet_hours
      FROM campaign.outbox_chunks k JOIN campaign.campaigns c ON c.id = k.campaign_id
      WHERE k.status = 'pending' AND c.status = 'sending'
      ORDER BY k.campaign_id, k.chunk
      LIMIT 1
      FOR UPDATE OF k SKIP LOCKED
      """, logger: logger
    ).collect().first
    guard
      let (campaign, chunk, first, next, wave, channel, budget, opens, clicks, quietHours) = try claimed?.decode(
        (UUID, Int32, UUID, UUID?, Int16, String, Int64?, Bool, Bool, String?).self)
    else { return nil }
    return OutboxChunk(
      campaignID: campaign, chunk: chunk, firstSubscriber: first, nextSubscriber: next, wave: wave, channel: channel,
      budgetCents: budget,
      trackOpens: opens, trackClicks: clicks, quietHours: quietHours)
  }

  /// The campaign's templates by variant name.
  func variantTemplates(of campaign: UUID, on connection: PostgresConnection) async throws -> [String: MessageTemplate] {
    var variants: [String: MessageTemplate] = [:]
    let rows = try await connection.query(
      """
      SELECT v.name, t.channel, t.format, t.subject, t.body, t.variables::text, t.content::text
      FROM campaign.campaign_variants v JOIN campaign.templates t ON t.id = v.template_id
      WHERE v.campaign_id = \(campaign)
      """, logger: logger
    ).collect()
    for row in rows {
      let (name, channel, format, subject, body, variablesJSON, content) = try row.decode(
        (String, String, String, String, String, String, String?).self)
      variants[name] = try Self.storedTemplate(
        channel: channel, format: format, subject: subject, body: body, variablesJSON: variablesJSON, contentJSON: content,
        what: "the template of variant \(name)")
    }
    return variants
  }

  /// The chunk's entries not yet settled on their own (a message delivery refused is not sent
  /// again), with what rendering and the consent check need of each subscriber: of the
  /// attributes only `attributeNames`, each as its jsonb type and text (PostgreSQL picks them
  /// out of the binary jsonb; the whole object is not decoded here).
  func entries(of chunk: OutboxChunk, attributeNames names: [String], on connection: PostgresConnection) async throws -> [OutboxEntry] {
    let consent = Self.consentSQL(chunk.channel)
    let attributeColumns = names.indices.map { ", jsonb_typeof(s.attributes -> keys.k[\($0 + 1)]), s.attributes ->> keys.k[\($0 + 1)]" }
    var entries: [OutboxEntry] = []
    entries.reserveCapacity(OutboxRelay.chunkSize)
    let rows = try await connection.query(
      """
      SELECT o.subscriber_id, o.variant, s.status, \(unescaped: consent), s.email, s.phone, s.first_name, s.last_name,
        \(unescaped: Self.addressSQL(chunk.channel)) \(unescaped: attributeColumns.joined())
      FROM (SELECT \(names)::text[] AS k) keys,
        campaign.outbox o LEFT JOIN campaign.subscribers s ON s.id = o.subscriber_id
      WHERE o.campaign_id = \(chunk.campaignID) AND o.subscriber_id >= \(chunk.firstSubscriber)
        AND (\(chunk.nextSubscriber)::uuid IS NULL OR o.subscriber_id < \(chunk.nextSubscriber)) AND o.status IS NULL
        AND o.wave = \(chunk.wave)
      """, logger: logger)
    for try await row in rows {
      let (subscriber, variant, status, consenting, email, phone, firstName, lastName, address) = try row.decode(
        (UUID, String, String?, Bool?, String?, String?, String?, String?, String?).self)
      var attributes: [String: String] = [:]
      if !names.isEmpty {
        let cells = row.makeRandomAccess()
        for (index, name) in names.enumerated() {
          let value = AttributeText(
            jsonType: try cells[9 + 2 * index].decode(String?.self), raw: try cells[10 + 2 * index].decode(String?.self))
          if let text = value.text { attributes[name] = text }
        }
      }
      entries.append(
        OutboxEntry(
          subscriberID: subscriber, variant: variant, active: status == "active", consenting: consenting ?? false,
          email: email, phone: phone, address: address, firstName: firstName ?? "", lastName: lastName ?? "",
          attributes: attributes))
    }
    return entries
  }

  /// Records the entries settled on their own and marks the chunk relayed, unless
  /// `keepPending` (delivery refused one of its messages: the rest goes with the next try).
  func settle(_ chunk: OutboxChunk, entries settled: [SettledEntry], keepPending: Bool, on connection: PostgresConnection) async throws {
    if !settled.isEmpty {
      try await connection.query(
        """
        UPDATE campaign.outbox o SET status = t.status, error = t.error
        FROM unnest(\(settled.map(\.subscriberID))::uuid[], \(settled.map(\.status))::text[], \(settled.map(\.error))::text[])
          AS t(subscriber_id, status, error)
        WHERE o.campaign_id = \(chunk.campaignID) AND o.subscriber_id = t.subscriber_id
        """, logger: logger)
    }
    try await connection.query(
      """
      UPDATE campaign.outbox_chunks SET exceptions = exceptions + \(Int32(settled.count)),
        status = CASE WHEN \(keepPending) THEN status ELSE 'relayed' END,
        relayed_at = CASE WHEN \(keepPending) THEN relayed_at ELSE now() END
      WHERE campaign_id = \(chunk.campaignID) AND chunk = \(chunk.chunk)
      """, logger: logger)
  }

  /// Marks every sending campaign whose outbox has nothing pending as sent (one whose A/B test
  /// is undecided is waiting for the rest of its audience); returns how many.
  @discardableResult
  func finishDrained() async throws -> Int {
    try await client.query(
      """
      UPDATE campaign.campaigns c SET status = 'sent', finished_at = now(), updated_at = now()
      WHERE c.status = 'sending'
        AND NOT EXISTS (SELECT 1 FROM campaign.outbox_chunks k WHERE k.campaign_id = c.id AND k.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM campaign.ab_tests t WHERE t.campaign_id = c.id AND t.decided_at IS NULL)
      RETURNING 1
      """, logger: logger
    ).collect().count
  }

  /// Claims the scheduled campaign due first with `FOR UPDATE SKIP LOCKED`, so two replicas
  /// never start one twice; nil when none is due. Campaigns of `skipping` channels are left for
  /// a later pass.
  func claimDueCampaign(skipping channels: [String] = [], on connection: PostgresConnection) async throws -> CampaignRecord? {
    let row = try await connection.query(
      """
      SELECT \(unescaped: Self.campaignColumns) FROM campaign.campaigns c
      WHERE c.status = 'scheduled' AND c.send_at <= now() AND c.channel <> ALL(\(channels)::text[])
      ORDER BY c.send_at LIMIT 1 FOR UPDATE SKIP LOCKED
      """, logger: logger
    ).collect().first
    return try row.map(Self.campaignRecord)
  }

  /// The channels of the campaigns due to start.
  func dueChannels() async throws -> Set<String> {
    Set(
      try await client.query(
        "SELECT DISTINCT channel FROM campaign.campaigns WHERE status = 'scheduled' AND send_at <= now()", logger: logger
      ).decode(String.self).elements())
  }

  /// Pending chunks and the entries in them still to relay (of sending and paused campaigns),
  /// for the metrics scrape: read through the partial index on pending chunks.
  package func pendingOutbox() async throws -> (chunks: Int64, entries: Int64) {
    let row = try await client.query(
      """
      SELECT count(*), coalesce(sum(entries - exceptions), 0)::int8 FROM campaign.outbox_chunks WHERE status = 'pending'
      """, logger: logger
    ).collect().first
    guard let (chunks, entries) = try row?.decode((Int64, Int64).self) else { throw PostgresError.protocol("count gave no row") }
    return (chunks, entries)
  }
}
