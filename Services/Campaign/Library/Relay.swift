import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import ServiceLifecycle
import SwiftProtobuf
import Synchronization

/// Where the relay hands rendered messages: the delivery service's `EnqueueMessages`.
package protocol MessageSink: Sendable {
  func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse
}

package struct DeliverySink: MessageSink {
  let client: Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  package init(client: GRPCClient<HTTP2ClientTransport.Posix>) {
    self.client = Herald_Delivery_V1_DeliveryService.Client(wrapping: client)
  }

  package func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse {
    try await client.enqueueMessages(request)
  }
}

/// Relays the outbox to delivery (SPEC §2). The outbox is cut into chunks of consecutive entries
/// when the audience is expanded; each chunk is claimed with `FOR UPDATE SKIP LOCKED` (so replicas
/// share the work), rendered, enqueued with idempotency keys `campaign_id:subscriber_id`, and
/// marked relayed in the same transaction. A crash after the enqueue but before the commit leaves
/// the chunk pending; the next attempt sends the same keys and delivery reports them as duplicates
/// — no recipient is lost or sent twice. Consent is checked again here, so an unsubscribe wins
/// over a send that is already under way; such entries (and failed renders) are settled on their
/// own with the reason. Only campaigns in `sending` are relayed: pause and cancel stop it at the
/// next chunk.
package struct OutboxRelay: Sendable {
  /// Entries per chunk, cut when the audience is expanded: one enqueue call each.
  package static let chunkSize = 1000
  let client: PostgresClient
  let sink: any MessageSink
  let logger: Logger
  private let templates = TemplateCache()

  package init(client: PostgresClient, sink: any MessageSink, logger: Logger) {
    self.client = client
    self.sink = sink
    self.logger = logger
  }

  /// An outbox entry and its subscriber as the relay reads them.
  struct Entry {
    var subscriberID: UUID
    var variant: String
    var active: Bool
    var consenting: Bool
    var email: String?
    var phone: String?
    var firstName: String
    var lastName: String
    /// The attributes the campaign's templates use, as text.
    var attributes: [String: String]
  }

  /// Relays one chunk; returns how many outbox entries it settled (0 when nothing is pending).
  @discardableResult
  package func relayBatch() async throws -> Int {
    let store = CampaignStore(client: client, logger: logger)
    let logger = self.logger
    return try await store.transaction { connection in
      let claimed = try await connection.query(
        """
        SELECT k.campaign_id, k.chunk, k.first_subscriber, k.next_subscriber, c.channel, c.budget_cents
        FROM campaign.outbox_chunks k JOIN campaign.campaigns c ON c.id = k.campaign_id
        WHERE k.status = 'pending' AND c.status = 'sending'
        ORDER BY k.campaign_id, k.chunk
        LIMIT 1
        FOR UPDATE OF k SKIP LOCKED
        """, logger: logger
      ).collect().first
      guard let (campaign, chunk, first, next, channel, budget) = try claimed?.decode((UUID, Int32, UUID, UUID?, String, Int64?).self)
      else { return 0 }
      // The chunk's entries with what rendering and the consent check need of each subscriber:
      // of the attributes, only those a variant's template uses, each as its jsonb type and text
      // (PostgreSQL picks them out of the binary jsonb; the whole object is not decoded here).
      // Entries settled on their own earlier (a message delivery refused) are not sent again.
      let variants = try await self.templates(for: campaign, on: connection)
      let consent = channel == "email" ? "s.email_subscribed" : "s.sms_subscribed"
      let names = Set(variants.values.flatMap(\.attributeNames)).sorted()
      let attributeColumns = names.indices.map { ", jsonb_typeof(s.attributes -> keys.k[\($0 + 1)]), s.attributes ->> keys.k[\($0 + 1)]" }
      var entries: [Entry] = []
      entries.reserveCapacity(Self.chunkSize)
      let rows = try await connection.query(
        """
        SELECT o.subscriber_id, o.variant, s.status, \(unescaped: consent), s.email, s.phone, s.first_name, s.last_name
          \(unescaped: attributeColumns.joined())
        FROM (SELECT \(names)::text[] AS k) keys,
          campaign.outbox o LEFT JOIN campaign.subscribers s ON s.id = o.subscriber_id
        WHERE o.campaign_id = \(campaign) AND o.subscriber_id >= \(first)
          AND (\(next)::uuid IS NULL OR o.subscriber_id < \(next)) AND o.status IS NULL
        """, logger: logger)
      for try await row in rows {
        let (subscriber, variant, status, consenting, email, phone, firstName, lastName) = try row.decode(
          (UUID, String, String?, Bool?, String?, String?, String?, String?).self)
        var attributes: [String: String] = [:]
        if !names.isEmpty {
          let cells = row.makeRandomAccess()
          for (index, name) in names.enumerated() {
            let value = AttributeText(
              jsonType: try cells[8 + 2 * index].decode(String?.self), raw: try cells[9 + 2 * index].decode(String?.self))
            if let text = value.text { attributes[name] = text }
          }
        }
        entries.append(
          Entry(
            subscriberID: subscriber, variant: variant, active: status == "active", consenting: consenting ?? false,
            email: email, phone: phone, firstName: firstName ?? "", lastName: lastName ?? "", attributes: attributes))
      }

      let campaignText = campaign.lowercasedString
      var messages: [(Entry, Herald_Delivery_V1_OutboundMessage)] = []
      var settled: [(Entry, status: String, error: String)] = []
      for entry in entries {
        guard entry.active else {
          settled.append((entry, "skipped", "subscriber is no longer active"))
          continue
        }
        guard entry.consenting, let recipient = channel == "email" ? entry.email : entry.phone else {
          settled.append((entry, "skipped", "unsubscribed from \(channel) before the send reached them"))
          continue
        }
        guard let template = variants[entry.variant] else {
          settled.append((entry, "failed", "variant \(entry.variant) has no template"))
          continue
        }
        do throws(SubscriberValidation.Invalid) {
          let rendered = try template.render(
            MessageTemplate.values(
              id: entry.subscriberID, email: entry.email, phone: entry.phone, firstName: entry.firstName,
              lastName: entry.lastName, attributes: entry.attributes))
          var message = Herald_Delivery_V1_OutboundMessage()
          let subscriberText = entry.subscriberID.lowercasedString
          message.idempotencyKey = "\(campaignText):\(subscriberText)"
          message.channel = channel == "email" ? .email : .sms
          message.recipient = recipient
          message.subject = rendered.subject
          message.body = rendered.body
          message.campaignID = campaignText
          message.subscriberID = subscriberText
          messages.append((entry, message))
        } catch {
          settled.append((entry, "failed", "render: \(error.message)"))
        }
      }

      var relayed = 0
      var refused = false
      // One enqueue call per part of the chunk small enough for a gRPC message (large bodies
      // times a thousand recipients would pass the 4 MiB limit). Parts enqueued before a failure
      // are sent again with the chunk's next try and recognised as duplicates.
      let outbound = messages.map(\.1)
      for part in Self.parts(of: outbound, maxBytes: Self.maxRequestBytes) {
        var request = Herald_Delivery_V1_EnqueueMessagesRequest()
        request.messages = Array(outbound[part])
        // The budget travels with the batch: delivery decides the spend cap atomically at send time.
        if let budget {
          request.spendCaps = [.with {
            $0.campaignID = campaignText
            $0.budgetCents = budget
          }]
        }
        do {
          let response = try await sink.enqueue(request)
          let answered = Set(response.results.map(\.idempotencyKey))
          if let missing = request.messages.first(where: { !answered.contains($0.idempotencyKey) }) {
            throw RPCError(code: .internalError, message: "delivery did not answer for \(missing.idempotencyKey)")
          }
          relayed += request.messages.count
          if response.duplicates > 0 {
            logger.info("delivery already had some of this chunk (an earlier attempt was cut short)", metadata: ["duplicates": "\(response.duplicates)"])
          }
        } catch let error as RPCError where error.code == .invalidArgument {
          // Delivery refused one message (it names it as messages[i].field): settle that one as
          // failed with the reason; the chunk stays pending and its rest goes with the next try.
          guard let field = error.field, let index = Self.messageIndex(field), request.messages.indices.contains(index) else { throw error }
          settled.append((messages[part.lowerBound + index].0, "failed", "delivery refused it: \(error.message)"))
          refused = true
          break
        }
      }

      if !settled.isEmpty {
        try await connection.query(
          """
          UPDATE campaign.outbox o SET status = t.status, error = t.error
          FROM unnest(\(settled.map(\.0.subscriberID))::uuid[], \(settled.map(\.status))::text[], \(settled.map(\.error))::text[])
            AS t(subscriber_id, status, error)
          WHERE o.campaign_id = \(campaign) AND o.subscriber_id = t.subscriber_id
          """, logger: logger)
      }
      try await connection.query(
        """
        UPDATE campaign.outbox_chunks SET exceptions = exceptions + \(Int32(settled.count)),
          status = CASE WHEN \(refused) THEN status ELSE 'relayed' END,
          relayed_at = CASE WHEN \(refused) THEN relayed_at ELSE now() END
        WHERE campaign_id = \(campaign) AND chunk = \(chunk)
        """, logger: logger)
      // A chunk with nothing left to send still counts as work done, so drain() moves on.
      return max(relayed + settled.count, 1)
    }
  }

  /// What one enqueue call may carry, under the gRPC servers' 4 MiB limit on a message.
  static let maxRequestBytes = 3 << 20

  /// Consecutive ranges of `messages` whose encoded size stays under `maxBytes` (each range has at
  /// least one message).
  static func parts(of messages: [Herald_Delivery_V1_OutboundMessage], maxBytes: Int) -> [Range<Int>] {
    var parts: [Range<Int>] = []
    var start = 0
    var size = 0
    for (index, message) in messages.enumerated() {
      // Field bytes plus a generous allowance for tags, lengths and the ids.
      let bytes = message.subject.utf8.count + message.body.utf8.count + message.recipient.utf8.count + 256
      if index > start && size + bytes > maxBytes {
        parts.append(start..<index)
        (start, size) = (index, 0)
      }
      size += bytes
    }
    if start < messages.count { parts.append(start..<messages.count) }
    return parts
  }

  static func messageIndex(_ field: String) -> Int? {
    guard field.hasPrefix("messages["), let close = field.firstIndex(of: "]") else { return nil }
    return Int(field[field.index(field.startIndex, offsetBy: 9)..<close])
  }

  /// Marks every sending campaign whose outbox has nothing pending as sent.
  @discardableResult
  package func finishDrained() async throws -> Int {
    try await client.query(
      """
      UPDATE campaign.campaigns c SET status = 'sent', finished_at = now(), updated_at = now()
      WHERE c.status = 'sending'
        AND NOT EXISTS (SELECT 1 FROM campaign.outbox_chunks k WHERE k.campaign_id = c.id AND k.status = 'pending')
      RETURNING 1
      """, logger: logger
    ).collect().count
  }

  /// Relays until nothing is pending and marks drained campaigns sent (used by tests and tools).
  package func drain() async throws {
    while try await relayBatch() > 0 {}
    try await finishDrained()
  }

  /// The campaign's variant templates; campaigns and templates do not change once created.
  private func templates(for campaign: UUID, on connection: PostgresConnection) async throws -> [String: MessageTemplate] {
    if let cached = templates.entries.withLock({ $0[campaign] }) { return cached }
    var variants: [String: MessageTemplate] = [:]
    let rows = try await connection.query(
      """
      SELECT v.name, t.channel, t.format, t.subject, t.body, t.variables::text
      FROM campaign.campaign_variants v JOIN campaign.templates t ON t.id = v.template_id
      WHERE v.campaign_id = \(campaign)
      """, logger: logger
    ).collect()
    for row in rows {
      let (name, channel, format, subject, body, variablesJSON) = try row.decode((String, String, String, String, String, String).self)
      let declared = try JSONDecoder().decode([TemplateVariable].self, from: Data(variablesJSON.utf8))
      do {
        variants[name] = try MessageTemplate(channel: channel, format: format, subject: subject, body: body, variables: declared)
      } catch {
        throw RPCError(code: .dataLoss, message: "the template of variant \(name) no longer parses: \(error.message)")
      }
    }
    templates.entries.withLock { $0[campaign] = variants }
    return variants
  }

  /// The background loop: relay while there is work, otherwise finish drained campaigns and wait.
  package func run(idle: Duration = .milliseconds(500)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await relayBatch() == 0 {
          try await finishDrained()
          await BackgroundWorker.pause(idle)
        }
      } catch {
        logger.error("relay batch failed; will retry", metadata: ["error": "\(error.databaseMessage)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

/// Each campaign's variant templates, by campaign id.
final class TemplateCache: Sendable {
  let entries = Mutex<[UUID: [String: MessageTemplate]]>([:])
}

/// Starts scheduled campaigns when due. Due campaigns are claimed with `FOR UPDATE SKIP LOCKED`
/// and started in the same transaction, so two replicas never start one twice.
package struct CampaignScheduler: Sendable {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  /// Starts every due campaign; returns how many it started or failed.
  @discardableResult
  package func startDue() async throws -> Int {
    let store = CampaignStore(client: client, logger: logger)
    let logger = self.logger
    var handled = 0
    while true {
      let started = try await store.transaction { connection -> Bool in
        let row = try await connection.query(
          """
          SELECT \(unescaped: CampaignStore.campaignColumns) FROM campaign.campaigns c
          WHERE c.status = 'scheduled' AND c.send_at <= now()
          ORDER BY c.send_at LIMIT 1 FOR UPDATE SKIP LOCKED
          """, logger: logger
        ).collect().first
        guard let row else { return false }
        let campaign = try CampaignStore.campaignRecord(row)
        guard CampaignStore.deliverableChannels.contains(campaign.channel) else {
          try await CampaignStore.setStatus(
            campaign.id, to: "failed", reason: "no provider for channel \(campaign.channel)", on: connection, logger: logger)
          logger.warning("scheduled campaign failed: no provider for its channel", metadata: ["campaign": "\(campaign.id)"])
          return true
        }
        try await CampaignStore.start(campaign, on: connection, logger: logger)
        logger.info("scheduled campaign started", metadata: ["campaign": "\(campaign.id)"])
        return true
      }
      guard started else { return handled }
      handled += 1
    }
  }

  package func run(interval: Duration = .seconds(1)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        try await startDue()
      } catch {
        logger.error("scheduler pass failed; will retry", metadata: ["error": "\(error.databaseMessage)"])
      }
      await BackgroundWorker.pause(interval)
    }
  }
}
