import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
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

/// Relays the outbox to delivery (SPEC §2). Each batch is claimed with `FOR UPDATE SKIP LOCKED`
/// (so replicas share the work), rendered, enqueued with idempotency keys
/// `campaign_id:subscriber_id`, and marked relayed in the same transaction. A crash after the
/// enqueue but before the commit leaves the entries pending; the next attempt sends the same keys
/// and delivery reports them as duplicates — no recipient is lost or sent twice. Consent is checked
/// again here, so an unsubscribe wins over a send that is already under way. Only campaigns in
/// `sending` are relayed: pause and cancel stop it at the next batch.
package struct OutboxRelay: Sendable {
  /// Relay loops each campaign process runs; batches of one campaign go out in parallel.
  package static let workersPerProcess = 2
  package var batchSize = 500
  let client: PostgresClient
  let sink: any MessageSink
  let logger: Logger
  private let templates = TemplateCache()
  private let position = RelayPosition()

  package init(client: PostgresClient, sink: any MessageSink, logger: Logger, batchSize: Int = 500) {
    self.client = client
    self.sink = sink
    self.logger = logger
    self.batchSize = batchSize
  }

  struct Entry {
    var campaignID: UUID
    var subscriberID: UUID
    var variant: String
    var channel: String
    var budgetCents: Int64?
  }

  /// Relays one batch; returns how many outbox entries it settled (0 when nothing is pending).
  @discardableResult
  package func relayBatch() async throws -> Int {
    let store = CampaignStore(client: client, logger: logger)
    let logger = self.logger
    let batchSize = self.batchSize
    let position = self.position
    return try await store.transaction { connection in
      // Claim from where this relay stopped (keyset): the front of the pending index fills with
      // entries already relayed, and scanning them again on every batch would make a large send
      // slow down as it goes. Nothing found past the position: look once more from the start.
      var entries: [Entry] = []
      var after = position.last.withLock { $0 }
      while true {
        let zero = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        let (afterCampaign, afterSubscriber) = after ?? (zero, zero)
        for try await (campaign, subscriber, variant, channel, budget) in try await connection.query(
          """
          SELECT o.campaign_id, o.subscriber_id, o.variant, c.channel, c.budget_cents
          FROM campaign.outbox o JOIN campaign.campaigns c ON c.id = o.campaign_id
          WHERE o.status = 'pending' AND c.status = 'sending'
            AND (o.campaign_id, o.subscriber_id) > (\(afterCampaign), \(afterSubscriber))
          ORDER BY o.campaign_id, o.subscriber_id
          LIMIT \(batchSize)
          FOR UPDATE OF o SKIP LOCKED
          """, logger: logger
        ).decode((UUID, UUID, String, String, Int64?).self) {
          entries.append(
            Entry(campaignID: campaign, subscriberID: subscriber, variant: variant, channel: channel, budgetCents: budget))
        }
        if !entries.isEmpty || after == nil { break }
        after = nil
      }
      position.last.withLock { $0 = entries.last.map { ($0.campaignID, $0.subscriberID) } }
      guard !entries.isEmpty else { return 0 }
      var subscribers: [UUID: SubscriberRecord] = [:]
      for row in try await connection.query(
        """
        SELECT \(unescaped: PostgresSubscriberStore.columns) FROM campaign.subscribers
        WHERE id = ANY(\(entries.map(\.subscriberID))::uuid[])
        """, logger: logger
      ).collect() {
        let record = try PostgresSubscriberStore.record(row)
        subscribers[record.id] = record
      }

      var messages: [(Entry, Herald_Delivery_V1_OutboundMessage)] = []
      var settled: [(Entry, status: String, error: String)] = []
      for entry in entries {
        let variants = try await self.templates(for: entry.campaignID, on: connection)
        guard let subscriber = subscribers[entry.subscriberID], subscriber.status == "active" else {
          settled.append((entry, "skipped", "subscriber is no longer active"))
          continue
        }
        let consenting = entry.channel == "email" ? subscriber.emailConsent.subscribed : subscriber.smsConsent.subscribed
        guard consenting, let recipient = entry.channel == "email" ? subscriber.email : subscriber.phone else {
          settled.append((entry, "skipped", "unsubscribed from \(entry.channel) before the send reached them"))
          continue
        }
        guard let template = variants[entry.variant] else {
          settled.append((entry, "failed", "variant \(entry.variant) has no template"))
          continue
        }
        do throws(SubscriberValidation.Invalid) {
          let rendered = try template.render(MessageTemplate.values(of: subscriber))
          var message = Herald_Delivery_V1_OutboundMessage()
          message.idempotencyKey = "\(entry.campaignID.uuidString.lowercased()):\(entry.subscriberID.uuidString.lowercased())"
          message.channel = entry.channel == "email" ? .email : .sms
          message.recipient = recipient
          message.subject = rendered.subject
          message.body = rendered.body
          message.campaignID = entry.campaignID.uuidString.lowercased()
          message.subscriberID = entry.subscriberID.uuidString.lowercased()
          messages.append((entry, message))
        } catch {
          settled.append((entry, "failed", "render: \(error.message)"))
        }
      }

      var relayed: [(Entry, UUID)] = []
      if !messages.isEmpty {
        var request = Herald_Delivery_V1_EnqueueMessagesRequest()
        request.messages = messages.map(\.1)
        // Budgets travel with the batch: delivery decides the spend cap atomically at send time.
        let budgets = Dictionary(messages.compactMap { entry, _ in entry.budgetCents.map { (entry.campaignID, $0) } }) { first, _ in first }
        request.spendCaps = budgets.map { campaign, budget in
          .with {
            $0.campaignID = campaign.uuidString.lowercased()
            $0.budgetCents = budget
          }
        }
        do {
          let response = try await sink.enqueue(request)
          let ids = Dictionary(response.results.map { ($0.idempotencyKey, $0.messageID) }, uniquingKeysWith: { first, _ in first })
          for (entry, message) in messages {
            guard let text = ids[message.idempotencyKey], let id = UUID(uuidString: text) else {
              throw RPCError(code: .internalError, message: "delivery did not answer for \(message.idempotencyKey)")
            }
            relayed.append((entry, id))
          }
          if response.duplicates > 0 {
            logger.info("delivery already had some of this batch (an earlier attempt was cut short)", metadata: ["duplicates": "\(response.duplicates)"])
          }
        } catch let error as RPCError where error.code == .invalidArgument {
          // Delivery refused one message (it names it as messages[i].field): settle that one as
          // failed with the reason; the rest stay pending for the next batch.
          guard let field = error.field, let index = Self.messageIndex(field), messages.indices.contains(index) else { throw error }
          settled.append((messages[index].0, "failed", "delivery refused it: \(error.message)"))
        }
      }

      if !relayed.isEmpty {
        try await connection.query(
          """
          UPDATE campaign.outbox o SET status = 'relayed', message_id = t.message_id, relayed_at = now()
          FROM unnest(\(relayed.map(\.0.campaignID))::uuid[], \(relayed.map(\.0.subscriberID))::uuid[], \(relayed.map(\.1))::uuid[])
            AS t(campaign_id, subscriber_id, message_id)
          WHERE o.campaign_id = t.campaign_id AND o.subscriber_id = t.subscriber_id
          """, logger: logger)
      }
      if !settled.isEmpty {
        try await connection.query(
          """
          UPDATE campaign.outbox o SET status = t.status, error = t.error
          FROM unnest(\(settled.map(\.0.campaignID))::uuid[], \(settled.map(\.0.subscriberID))::uuid[],
            \(settled.map(\.status))::text[], \(settled.map(\.error))::text[])
            AS t(campaign_id, subscriber_id, status, error)
          WHERE o.campaign_id = t.campaign_id AND o.subscriber_id = t.subscriber_id
          """, logger: logger)
      }
      return relayed.count + settled.count
    }
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
        AND NOT EXISTS (SELECT 1 FROM campaign.outbox o WHERE o.campaign_id = c.id AND o.status = 'pending')
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

/// Where a relay's last batch ended (campaign id, subscriber id).
final class RelayPosition: Sendable {
  let last = Mutex<(UUID, UUID)?>(nil)
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
