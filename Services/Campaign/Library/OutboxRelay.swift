import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import SwiftProtobuf
import Synchronization

/// Where the relay hands rendered messages: the delivery service's `EnqueueMessages`.
package protocol MessageSink: Sendable {
  func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse
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
///
/// Metrics: `herald_campaign_relayed_messages_total` (messages handed to delivery in committed
/// chunks, duplicates of an earlier attempt cut short included) and
/// `herald_campaign_outbox_settled_total{status}` (entries settled on their own: `skipped`,
/// `failed`).
package struct OutboxRelay: Sendable {
  /// Entries per chunk, cut when the audience is expanded: one enqueue call each.
  package static let chunkSize = 1000
  let store: CampaignStore
  let sink: any MessageSink
  let logger: Logger
  /// Each e-mail's unsubscribe link (List-Unsubscribe and `{{unsubscribe_url}}`).
  let links: UnsubscribeLinks
  /// The open pixel and click redirects of campaigns that track them.
  let tracking: TrackingLinks
  private let templates = TemplateCache()

  package init(
    client: PostgresClient, sink: any MessageSink, links: UnsubscribeLinks = .none, tracking: TrackingLinks = .none,
    logger: Logger
  ) {
    self.store = CampaignStore(client: client, logger: logger)
    self.sink = sink
    self.links = links
    self.tracking = tracking
    self.logger = logger
  }

  /// What relaying one chunk did, counted once its transaction has committed.
  private struct ChunkOutcome: Sendable {
    var relayed: Int
    var settled: [SettledEntry]
  }

  /// Relays one chunk; returns how many outbox entries it settled (0 when nothing is pending).
  @discardableResult
  package func relayBatch() async throws -> Int {
    let (store, sink, logger, templates, links, tracking) = (
      self.store, self.sink, self.logger, self.templates, self.links, self.tracking
    )
    let outcome = try await store.transaction { connection -> ChunkOutcome? in
      guard let chunk = try await store.claimChunk(on: connection) else { return nil }
      // The campaign's variant templates; campaigns and templates do not change once created.
      let variants: [String: MessageTemplate]
      if let cached = templates.entries.withLock({ $0[chunk.campaignID] }) {
        variants = cached
      } else {
        variants = try await store.variantTemplates(of: chunk.campaignID, on: connection)
        templates.entries.withLock { $0[chunk.campaignID] = variants }
      }
      // An SMS recipient's time zone attribute too, for quiet hours.
      let names = Set(variants.values.flatMap(\.attributeNames) + (chunk.channel == "sms" ? Self.timeZoneAttributes : [])).sorted()
      let entries = try await store.entries(of: chunk, attributeNames: names, on: connection)

      let channel = chunk.channel
      let signer = links.signer()
      // Only HTML e-mail can carry a pixel and redirects.
      let linkTracking =
        channel == "email" ? LinkTracking(links: tracking, opens: chunk.trackOpens, clicks: chunk.trackClicks) : nil
      let campaignText = chunk.campaignID.lowercasedString
      // SMS: the campaign's own delivery window, if it has one (delivery narrows it further).
      let quietHours = chunk.quietHours.flatMap(QuietWindow.parts(of:)).map { window in
        Herald_Delivery_V1_QuietHours.with {
          $0.start = window.start
          $0.end = window.end
        }
      }
      var messages: [(OutboxEntry, Herald_Delivery_V1_OutboundMessage)] = []
      var settled: [SettledEntry] = []
      func settle(_ entry: OutboxEntry, _ status: String, _ error: String) {
        settled.append(SettledEntry(subscriberID: entry.subscriberID, status: status, error: error))
      }
      for entry in entries {
        guard entry.active else {
          settle(entry, "skipped", "subscriber is no longer active")
          continue
        }
        guard entry.consenting, let recipient = entry.address else {
          settle(entry, "skipped", "unsubscribed from \(channel) before the send reached them")
          continue
        }
        guard let template = variants[entry.variant] else {
          settle(entry, "failed", "variant \(entry.variant) has no template")
          continue
        }
        do throws(SubscriberValidation.Invalid) {
          let person = MessageRecipient(
            subscriber: entry.subscriberID, email: entry.email, phone: entry.phone, firstName: entry.firstName,
            lastName: entry.lastName, attributes: entry.attributes)
          var message = try Self.message(
            template, channel: channel, to: person, address: recipient,
            key: "\(campaignText):\(entry.subscriberID.lowercasedString)", sender: chunk.campaignID, signer: signer,
            tracking: linkTracking, keyedTracking: false)
          message.campaignID = campaignText
          if channel == "sms", let quietHours { message.quietHours = quietHours }
          messages.append((entry, message))
        } catch {
          settle(entry, "failed", "render: \(error.message)")
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
        if let budget = chunk.budgetCents {
          request.spendCaps = [
            .with {
              $0.campaignID = campaignText
              $0.budgetCents = budget
            }
          ]
        }
        do {
          let response = try await sink.enqueue(request)
          let answered = Set(response.results.map(\.idempotencyKey))
          if let missing = request.messages.first(where: { !answered.contains($0.idempotencyKey) }) {
            throw RPCError(code: .internalError, message: "delivery did not answer for \(missing.idempotencyKey)")
          }
          relayed += request.messages.count
          if response.duplicates > 0 {
            logger.info(
              "delivery already had some of this chunk (an earlier attempt was cut short)",
              metadata: ["duplicates": "\(response.duplicates)"])
          }
        } catch let error as RPCError where error.code == .invalidArgument {
          // Delivery refused one message (it names it as messages[i].field): settle that one as
          // failed with the reason; the chunk stays pending and its rest goes with the next try.
          guard let field = error.field, let index = Self.messageIndex(field), request.messages.indices.contains(index) else { throw error }
          settle(messages[part.lowerBound + index].0, "failed", "delivery refused it: \(error.message)")
          refused = true
          break
        }
      }
      try await store.settle(chunk, entries: settled, keepPending: refused, on: connection)
      return ChunkOutcome(relayed: relayed, settled: settled)
    }
    guard let outcome else { return 0 }
    Counter(label: "herald_campaign_relayed_messages_total").increment(by: outcome.relayed)
    for (status, entries) in Dictionary(grouping: outcome.settled, by: \.status) {
      Counter(label: "herald_campaign_outbox_settled_total", dimensions: [("status", status)]).increment(by: entries.count)
    }
    // A chunk with nothing left to send still counts as work done, so drain() moves on.
    return max(outcome.relayed + outcome.settled.count, 1)
  }

  /// What one enqueue call may carry, under the gRPC servers' 4 MiB limit on a message.
  static let maxRequestBytes = 3 << 20

  /// Consecutive ranges of `messages` whose encoded size stays under `maxBytes` (each range has at
  /// least one message).
  /// The subscriber attributes that may hold the recipient's time zone (an IANA name), first first.
  static let timeZoneAttributes = ["time_zone", "timezone"]

  /// The first of them that looks like a zone name (delivery checks it against the zones it
  /// knows, and uses the number's for one it does not know).
  static func timeZone(in attributes: [String: String]) -> String? {
    timeZoneAttributes.lazy.compactMap { attributes[$0] }.first { zone in
      !zone.isEmpty && zone.utf8.count <= 64
        && zone.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: "\"") }
    }
  }

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
    try await store.finishDrained()
  }

  /// Relays until nothing is pending and marks drained campaigns sent (used by tests and tools).
  package func drain() async throws {
    while try await relayBatch() > 0 {}
    try await finishDrained()
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
        logger.error("relay batch failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}

/// Who a message is for, as a relay reads them.
struct MessageRecipient: Sendable {
  var subscriber: UUID
  var email: String?
  var phone: String?
  var firstName: String
  var lastName: String
  /// The attributes the template uses (and the time zone's), as text.
  var attributes: [String: String]
}

extension OutboxRelay {
  /// One person's message, made as every campaign and journey send is: their values and their
  /// own unsubscribe link (the List-Unsubscribe header, one click, RFC 8058, and the template's
  /// `{{unsubscribe_url}}` / `{{preferences_url}}`), the tracking of an HTML e-mail, the
  /// template's format (delivery never guesses), and for SMS their time zone for quiet hours
  /// (without one, delivery uses the number's). `sender` is the campaign or journey the links
  /// name; `keyedTracking`: the tracking links carry `key` (a journey's, which is not
  /// `campaign:subscriber`).
  static func message(
    _ template: MessageTemplate, channel: String, to person: MessageRecipient, address: String, key: String, sender: UUID,
    signer: SignedTokenSigner?, tracking: LinkTracking?, keyedTracking: Bool
  ) throws(SubscriberValidation.Invalid) -> Herald_Delivery_V1_OutboundMessage {
    var values = MessageTemplate.values(
      id: person.subscriber, email: person.email, phone: person.phone, firstName: person.firstName, lastName: person.lastName,
      attributes: person.attributes)
    let unsubscribeURL =
      channel == "email" || template.showsOptOut
      ? signer.map(UnsubscribeToken(subscriber: person.subscriber, campaign: sender, channel: channel).sign) : nil
    if let unsubscribeURL {
      values["unsubscribe_url"] = unsubscribeURL
      values["preferences_url"] = unsubscribeURL
    }
    let rendered = try template.render(values)
    var message = Herald_Delivery_V1_OutboundMessage()
    message.idempotencyKey = key
    message.channel = DeliverySink.channel(channel)
    message.recipient = address
    message.subject = rendered.subject
    switch channel {
    case "push":
      // The address is "<platform>:<token>" (`CampaignStore.addressSQL`).
      let content = try template.renderContent(values)
      let platform = address.prefix { $0 != ":" }
      message.recipient = String(address.dropFirst(platform.count + 1))
      message.push = .with {
        $0.platform = String(platform)
        if !content.data.isEmpty {
          $0.dataJson = (try? JSONEncoder().encode(content.data)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
        $0.deepLink = content.deepLink ?? ""
      }
    case "whatsapp":
      if let approved = template.content.whatsapp {
        let content = try template.renderContent(values)
        message.whatsappTemplate = .with {
          $0.name = approved.templateName
          $0.language = approved.language
          $0.parameters = content.parameters
        }
      }
    default: break
    }
    message.body =
      if let tracking, template.format == "html" {
        tracking.apply(to: rendered.body, campaign: sender, subscriber: person.subscriber, key: keyedTracking ? key : nil)
      } else {
        rendered.body
      }
    message.format = template.format
    if channel == "email", let unsubscribeURL { message.listUnsubscribeURL = unsubscribeURL }
    message.subscriberID = person.subscriber.lowercasedString
    if channel == "sms", let zone = timeZone(in: person.attributes) { message.timeZone = zone }
    return message
  }
}

/// Each campaign's variant templates, by campaign id.
private final class TemplateCache: Sendable {
  let entries = Mutex<[UUID: [String: MessageTemplate]]>([:])
}
