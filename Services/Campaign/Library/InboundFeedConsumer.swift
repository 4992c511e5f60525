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

/// Where inbound messages come from: the delivery service's `ListInboundFeed`, where the
/// subscribers found for them go (`LinkInboundSubscribers`), and where answers are queued
/// (`EnqueueMessages`).
package protocol InboundSource: Sendable {
  func inbound(after cursor: String, limit: Int32) async throws -> Herald_Delivery_V1_ListInboundFeedResponse
  func link(_ links: [Herald_Delivery_V1_InboundSubscriberLink]) async throws
  func enqueue(_ request: Herald_Delivery_V1_EnqueueMessagesRequest) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse
}

/// Takes in inbound messages (SPEC §11): links each sender to its subscriber (the one the answered
/// message was sent to, else the one with that phone number or e-mail address), and turns SMS
/// keywords into consent: STOP (and its synonyms, or a reviewed request to stop) withdraws the SMS
/// consent, START gives it back, each recorded in the consent history with the keyword as its
/// source (`sms-keyword:STOP`) and the campaign answered. The delivery service has already
/// suppressed the number; this keeps the subscriber's consent true to it. Mail to a campaign
/// e-mail's List-Unsubscribe `mailto:` address withdraws the e-mail consent (source
/// `list-unsubscribe`, the campaign), as the one-click link does (SPEC §10).
///
/// Then it answers replies by the auto-response rules (the first enabled one that matches, lowest
/// priority first): never a keyword, a message held for review or an automatic message (RFC
/// 3834, decided by delivery); not within the rule's cooldown for the sender, nor past its daily
/// cap (recorded as skipped). An answer goes to the sender alone, through delivery's queue, with
/// the idempotency key `auto-response:<inbound id>`; an e-mail answer carries In-Reply-To,
/// References and Auto-Submitted: auto-replied.
///
/// The cursor is kept in `campaign.inbound_feed` and moved in the same transaction as the consent
/// changes and the answers' rows, under that row's lock: each message is applied once however
/// many replicas run this. The links and answers are handed to delivery before that transaction
/// commits; both are idempotent, so a batch applied again after a failure links and answers
/// nothing twice.
package struct InboundFeedConsumer: Sendable {
  let store: CampaignStore
  let source: any InboundSource
  let logger: Logger
  let batchSize: Int32

  package init(client: PostgresClient, source: any InboundSource, logger: Logger, batchSize: Int32 = 1000) {
    self.store = CampaignStore(client: client, logger: logger)
    self.source = source
    self.logger = logger
    self.batchSize = batchSize
  }

  /// A change of consent an inbound message asks for.
  struct ConsentChange: Sendable {
    var channel = "sms"
    var subscriber: UUID
    var subscribed: Bool
    var source: String
    var campaign: UUID?
  }

  /// The first word of a text, upper-cased, of letters and digits only ("join!" → "JOIN").
  static func firstWord(_ text: String) -> String {
    let word = text.split(whereSeparator: { $0.isWhitespace }).first.map(String.init) ?? ""
    return String(word.filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.uppercased().prefix(40))
  }

  /// Applies the next batch; returns how many messages it took in.
  @discardableResult
  package func pollOnce() async throws -> Int {
    let (store, source, batchSize) = (self.store, self.source, self.batchSize)
    let (applied, changed) = try await store.transaction { connection -> (Int, Int) in
      let cursor = try await store.lockInboundCursor(on: connection)
      let response = try await source.inbound(after: cursor, limit: batchSize)
      guard !response.messages.isEmpty else { return (0, 0) }
      // Who has each sender's number or address now: unlinked senders are linked to them, and an
      // SMS keyword changes their consent (a recycled number's new owner, not the subscriber an
      // old text went to).
      let found = try await store.subscriberIDs(
        phones: response.messages.filter { $0.channel == "sms" }.map(\.from),
        emails: response.messages.filter { $0.subscriberID.isEmpty && $0.channel == "email" }.map(\.from),
        whatsapps: response.messages.filter { $0.channel == "whatsapp" }.map(\.from), on: connection)
      var links: [Herald_Delivery_V1_InboundSubscriberLink] = []
      var changes: [ConsentChange] = []
      for message in response.messages {
        var subscriber = UUID(text: message.subscriberID)
        let key = message.channel == "whatsapp" ? "whatsapp:" + message.from : message.from
        if subscriber == nil, let id = found[key] {
          subscriber = id
          links.append(
            .with {
              $0.inboundID = message.id
              $0.subscriberID = id.lowercasedString
            })
        }
        let campaign = UUID(text: message.campaignID)
        if ["sms", "whatsapp"].contains(message.channel), ["stop", "stop_reviewed", "start"].contains(message.action) {
          // A keyword on WhatsApp changes the WhatsApp consent only.
          guard let owner = found[key] else { continue }
          let via = message.channel == "whatsapp" ? "whatsapp" : "sms"
          changes.append(
            ConsentChange(
              channel: message.channel, subscriber: owner, subscribed: message.action == "start",
              source: message.action == "stop_reviewed" ? "\(via)-reply:reviewed" : "\(via)-keyword:\(message.keyword)",
              campaign: campaign))
          continue
        }
        guard let subscriber else { continue }
        switch message.action {
        case "unsubscribe" where message.channel == "email":
          // Mail to a campaign e-mail's List-Unsubscribe address (the one-click link's twin).
          changes.append(
            ConsentChange(channel: "email", subscriber: subscriber, subscribed: false, source: "list-unsubscribe", campaign: campaign))
        default: break
        }
      }
      var changed = 0
      for change in changes { changed += try await store.changeConsent(change, on: connection) }
      if !links.isEmpty { try await source.link(links) }
      let linked = Dictionary(links.map { ($0.inboundID, $0.subscriberID) }, uniquingKeysWith: { first, _ in first })
      try await Self.answer(response.messages, linked: linked, store: store, source: source, on: connection)
      // Journeys triggered by an inbound keyword or reply (SPEC §12): replies and other messages
      // from known people; not STOP, START, HELP, automatic answers or unsubscribes.
      let inbound = response.messages.compactMap { message -> (subscriber: UUID, properties: String)? in
        guard ["reply", "none"].contains(message.action), let subscriber = UUID(text: linked[message.id] ?? message.subscriberID)
        else { return nil }
        var properties: [String: JSONValue] = [
          "channel": .string(message.channel), "keyword": .string(Self.firstWord(message.text)),
          "reply": .bool(message.action == "reply"), "text": .string(String(message.text.prefix(1000))),
        ]
        if !message.campaignID.isEmpty { properties["campaign_id"] = .string(message.campaignID.lowercased()) }
        return (subscriber, CampaignStore.properties(properties))
      }
      try await store.recordHeraldEvents(JourneyEvents.inbound, inbound, on: connection)
      try await store.advanceInboundFeed(to: response.nextCursor, applied: response.messages.count, on: connection)
      return (response.messages.count, changed)
    }
    if applied > 0 { Counter(label: "herald_campaign_inbound_applied_total").increment(by: applied) }
    if changed > 0 { Counter(label: "herald_campaign_inbound_consent_changes_total").increment(by: changed) }
    return applied
  }

  /// Answers the replies among `messages` by the enabled rules, in the caller's transaction.
  static func answer(
    _ messages: [Herald_Delivery_V1_InboundMessage], linked: [String: String], store: CampaignStore, source: any InboundSource,
    on connection: PostgresConnection
  ) async throws {
    // An e-mail is answered only when it replies to a message of Herald's (anyone can forge a
    // From); a text to Herald's number may be answered whatever it answers.
    let replies = messages.filter { $0.action == "reply" || $0.action == "none" && $0.channel == "sms" }
    guard !replies.isEmpty else { return }
    let rules = try await store.rules(enabledOnly: true, on: connection)
    guard !rules.isEmpty else { return }
    let matched = replies.compactMap { message -> (Herald_Delivery_V1_InboundMessage, AutoResponseRule)? in
      rules.first { $0.matches(channel: message.channel, text: message.text, campaign: UUID(text: message.campaignID)) }
        .map { (message, $0) }
    }
    guard !matched.isEmpty else { return }
    let subscriberIDs = matched.compactMap { UUID(text: linked[$0.0.id] ?? $0.0.subscriberID) }
    let subscribers = Dictionary(
      try await store.lookupSubscribers(ids: subscriberIDs, emails: [], phones: []).map { ($0.id, $0) },
      uniquingKeysWith: { first, _ in first })
    let campaignNames = try await store.campaignNames(matched.compactMap { UUID(text: $0.0.campaignID) }, on: connection)
    var outbound: [(inbound: UUID, message: Herald_Delivery_V1_OutboundMessage)] = []
    for (message, rule) in matched {
      guard let inbound = UUID(text: message.id) else { continue }
      let subscriberID = UUID(text: linked[message.id] ?? message.subscriberID)
      let subscriber = subscriberID.flatMap { subscribers[$0] }
      var status = "queued"
      var detail = ""
      var answer: (subject: String, body: String)?
      if let subscriber, subscriber.status != "active" {
        (status, detail) = ("skipped", "the subscriber is \(subscriber.status)")
      } else if let reason = try await store.holdBack(rule, recipient: message.from, on: connection) {
        (status, detail) = ("skipped", reason)
      } else {
        do throws(SubscriberValidation.Invalid) {
          let rendered = try rule.render(
            subscriber: subscriber, text: String(message.text.prefix(Self.maxQuoted)), subject: message.subject,
            campaignName: UUID(text: message.campaignID).flatMap { campaignNames[$0] } ?? "")
          answer = (Self.oneLine(rendered.subject), rendered.body)
          detail = "rule \(rule.name)"
          if rendered.body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            (status, detail, answer) = ("skipped", "rule \(rule.name): the answer is empty", nil)
          }
        } catch {
          (status, detail) = ("skipped", "rule \(rule.name): \(error.message)")
        }
      }
      guard
        try await store.recordResponse(
          rule: rule.id, inbound: inbound, subscriber: subscriberID, recipient: message.from, status: status, detail: detail,
          on: connection), let answer
      else { continue }
      var reply = Herald_Delivery_V1_OutboundMessage()
      reply.idempotencyKey = "auto-response:\(message.id)"
      reply.channel = message.channel == "email" ? .email : .sms
      reply.recipient = message.from
      reply.subject = message.channel == "email" ? answer.subject : ""
      reply.body = answer.body
      if let subscriberID { reply.subscriberID = subscriberID.lowercasedString }
      reply.notBefore = Google_Protobuf_Timestamp(date: message.receivedAt.date.addingTimeInterval(TimeInterval(rule.delaySeconds)))
      if message.channel == "email" {
        // RFC 3834 §3.1.5 and §5: threaded under the message answered, and marked automatic.
        if Self.isMessageID(message.providerMessageID) { reply.inReplyTo = message.providerMessageID }
        reply.autoSubmitted = true
      }
      outbound.append((inbound, reply))
    }
    // One at a time: an answer delivery refuses (an address it cannot send to...) is recorded as
    // skipped with the reason, and stops neither the others nor the feed.
    var queued: [(inbound: UUID, message: UUID)] = []
    for (inbound, reply) in outbound {
      do {
        let result = try await source.enqueue(.with { $0.messages = [reply] })
        if let id = result.results.first.flatMap({ UUID(text: $0.messageID) }) { queued.append((inbound, id)) }
      } catch let error as RPCError where error.code == .invalidArgument {
        try await store.skipResponse(inbound: inbound, detail: "delivery refused the answer: \(error.message)", on: connection)
      }
    }
    try await store.setResponseMessages(queued, on: connection)
  }

  /// How much of the message an answer may quote (`inbound.text`).
  static let maxQuoted = 1000

  /// A header's value on one line: control characters become spaces; at most 998 characters.
  static func oneLine(_ text: String) -> String {
    String(String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) }).prefix(998))
  }

  /// A Message-ID as delivery takes one for In-Reply-To: `<` printable ASCII without angle
  /// brackets or spaces `>`, at most 998 characters.
  static func isMessageID(_ text: String) -> Bool {
    text.count > 2 && text.count <= 998 && text.hasPrefix("<") && text.hasSuffix(">")
      && text.utf8.dropFirst().dropLast().allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") }
  }

  package func run(idle: Duration = .seconds(1)) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      do {
        if try await pollOnce() == 0 { await BackgroundWorker.pause(idle) }
      } catch {
        logger.error("inbound feed poll failed; will retry", metadata: ["error": "\(error.logDescription)"])
        await BackgroundWorker.pause(.seconds(2))
      }
    }
  }
}
