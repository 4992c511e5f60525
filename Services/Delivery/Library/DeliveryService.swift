import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.delivery.v1.DeliveryService` (SPEC §3): its handlers check requests and map between
/// protobuf messages and the store's records, by area: queueing messages (here), messages and
/// the events feed (`DeliveryService+Messages.swift`), providers, provider webhooks,
/// suppressions, and spend caps with warm-up (`+Spend`). Every statement is the store's
/// (`DeliveryStore`); the live providers and their breakers are the registry's.
package struct DeliveryService: Herald_Delivery_V1_DeliveryService.SimpleServiceProtocol {
  package static let maxBatch = 1000
  let store: DeliveryStore
  let providers: ProviderRegistry
  /// Checks the tokens of tracking links (signed by the campaign relay).
  let tracking: TrackingLinks
  /// The installation's SMS delivery window (HERALD_SMS_QUIET_HOURS).
  let smsQuietHours: QuietWindow
  /// Check the signed Reply-To and List-Unsubscribe addresses inbound e-mail is sent to.
  let addressKeys: [(id: String, key: Data)]

  package init(
    store: DeliveryStore, providers: ProviderRegistry, tracking: TrackingLinks = .none, smsQuietHours: QuietWindow = .standard,
    addressKeys: [(id: String, key: Data)] = []
  ) {
    self.store = store
    self.providers = providers
    self.tracking = tracking
    self.smsQuietHours = smsQuietHours
    self.addressKeys = addressKeys
  }

  package func enqueueMessages(
    request: Herald_Delivery_V1_EnqueueMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_EnqueueMessagesResponse {
    guard !request.messages.isEmpty else {
      throw RPCError.field("messages", .invalidArgument, "messages is empty")
    }
    guard request.messages.count <= Self.maxBatch else {
      throw RPCError.field(
        "messages", .invalidArgument, "messages holds \(request.messages.count); at most \(Self.maxBatch) per batch")
    }
    let messages = try await withQuietHours(
      try request.messages.enumerated().map { index, message in try Self.validate(message, field: "messages[\(index)]") },
      field: { "messages[\($0)]" })
    var caps: [(UUID, Int64)] = []
    for (index, cap) in request.spendCaps.enumerated() {
      let campaign = try RPCError.uuid(cap.campaignID, field: "spend_caps[\(index)].campaign_id")
      guard cap.budgetCents >= 0 else {
        throw RPCError.field(
          "spend_caps[\(index)].budget_cents", .invalidArgument, "spend_caps[\(index)].budget_cents must not be negative")
      }
      caps.append((campaign, cap.budgetCents))
    }
    // The caps are written before the messages, so no worker can send one of them uncapped.
    try await store.setSpendCaps(caps)
    let outcomes = try await store.enqueue(messages)
    var response = Herald_Delivery_V1_EnqueueMessagesResponse()
    response.results = outcomes.map(Self.result)
    response.duplicates = Int32(outcomes.count { $0.duplicate })
    response.suppressed = Int32(outcomes.count { $0.suppressed })
    response.accepted = Int32(outcomes.count) - response.duplicates
    return response
  }

  /// A single transactional message (`POST /v1/messages`): queued like one of a batch; a key
  /// accepted before answers the earlier message, marked duplicate.
  package func sendMessage(
    request: Herald_Delivery_V1_OutboundMessage, context: ServerContext
  ) async throws -> Herald_Delivery_V1_EnqueueResult {
    let outcomes = try await store.enqueue(try await withQuietHours([try Self.validate(request, field: "")]))
    guard let outcome = outcomes.first else { throw RPCError(code: .internalError, message: "the queue answered no outcome") }
    return Self.result(outcome)
  }

  static func result(_ outcome: EnqueueOutcome) -> Herald_Delivery_V1_EnqueueResult {
    var result = Herald_Delivery_V1_EnqueueResult()
    result.idempotencyKey = outcome.idempotencyKey
    result.messageID = outcome.messageID.lowercasedString
    result.duplicate = outcome.duplicate
    result.suppressed = outcome.suppressed
    return result
  }

  /// Checks a message (`messages[i]` of a batch, or a whole request when `prefix` is empty); the
  /// field's name is spelled out only when it is wrong. The idempotency key (an HTTP header and an
  /// e-mail header), the recipient (an SMTP command) and the subject (an e-mail header) must be
  /// one line without control characters.
  static func validate(_ message: Herald_Delivery_V1_OutboundMessage, field prefix: @autoclosure () -> String) throws -> QueuedMessage {
    func name(_ field: String) -> String {
      let prefix = prefix()
      return prefix.isEmpty ? field : "\(prefix).\(field)"
    }
    let key = message.idempotencyKey
    guard !key.isEmpty, key.utf8.count <= 200 else {
      throw RPCError.field(name("idempotency_key"), .invalidArgument, "\(name("idempotency_key")) must be 1 to 200 bytes")
    }
    func oneLine(_ text: String, _ field: String) throws(RPCError) {
      guard !text.containsControlCharacter else {
        throw RPCError.field(name(field), .invalidArgument, "\(name(field)) must be one line without control characters")
      }
    }
    try oneLine(key, "idempotency_key")
    guard let channel = Self.channelName(message.channel) else {
      throw RPCError.field(name("channel"), .invalidArgument, "\(name("channel")) must be email, sms, push or whatsapp")
    }
    guard !message.recipient.allSatisfy(\.isWhitespace) else {
      throw RPCError.field(name("recipient"), .invalidArgument, "\(name("recipient")) is empty")
    }
    try oneLine(message.recipient, "recipient")
    try oneLine(message.subject, "subject")
    guard !message.body.isEmpty else {
      throw RPCError.field(name("body"), .invalidArgument, "\(name("body")) is empty")
    }
    let format = message.format.isEmpty ? "text" : message.format
    guard format == "text" || format == "html" else {
      throw RPCError.field(name("format"), .invalidArgument, "\(name("format")) '\(message.format)' must be text or html")
    }
    guard format == "text" || channel == "email" else {
      throw RPCError.field(name("format"), .invalidArgument, "\(name("format")) html is for e-mail only; \(channel) is text")
    }
    guard message.textBody.isEmpty || format == "html" else {
      throw RPCError.field(
        name("text_body"), .invalidArgument, "\(name("text_body")) is the text alternative of an HTML body: set format to html")
    }
    let unsubscribe = message.listUnsubscribeURL
    if !unsubscribe.isEmpty {
      guard channel == "email", unsubscribe.count <= 2048,
        unsubscribe.hasPrefix("https://") || unsubscribe.hasPrefix("http://"),
        unsubscribe.utf8.allSatisfy({
          (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">")
        })
      else {
        throw RPCError.field(
          name("list_unsubscribe_url"), .invalidArgument,
          "\(name("list_unsubscribe_url")) must be an http(s) URL without spaces, commas or angle brackets, on an e-mail")
      }
    }
    func uuid(_ text: String, _ field: String) throws -> UUID? {
      text.isEmpty ? nil : try RPCError.uuid(text, field: name(field))
    }
    var window: QuietWindow?
    if message.hasQuietHours {
      guard channel == "sms" else {
        throw RPCError.field(name("quiet_hours"), .invalidArgument, "\(name("quiet_hours")) applies to SMS only")
      }
      guard let given = QuietWindow(message.quietHours) else {
        throw RPCError.field(
          name("quiet_hours"), .invalidArgument, "\(name("quiet_hours")) must have start and end as HH:MM (end up to 24:00)")
      }
      window = given
    }
    if !message.timeZone.isEmpty {
      guard channel == "sms" else { throw RPCError.field(name("time_zone"), .invalidArgument, "\(name("time_zone")) applies to SMS only") }
      try oneLine(message.timeZone, "time_zone")
    }
    if message.ignoreQuietHours {
      guard channel == "sms", message.campaignID.isEmpty else {
        throw RPCError.field(
          name("ignore_quiet_hours"), .invalidArgument,
          "\(name("ignore_quiet_hours")) is for SMS without a campaign only (campaign texts keep the recipient's hours)")
      }
    }
    var queued = QueuedMessage(
      idempotencyKey: key, channel: channel, recipient: message.recipient, subject: message.subject, body: message.body,
      format: format, textBody: message.textBody.isEmpty ? nil : message.textBody,
      listUnsubscribeURL: unsubscribe.isEmpty ? nil : unsubscribe,
      campaignID: try uuid(message.campaignID, "campaign_id"),
      subscriberID: try uuid(message.subscriberID, "subscriber_id"),
      notBefore: message.hasNotBefore ? message.notBefore.date : nil)
    if !message.inReplyTo.isEmpty {
      guard channel == "email" else {
        throw RPCError.field(name("in_reply_to"), .invalidArgument, "\(name("in_reply_to")) applies to e-mail only")
      }
      guard message.inReplyTo.count <= 998, message.inReplyTo.hasPrefix("<"), message.inReplyTo.hasSuffix(">"),
        message.inReplyTo.dropFirst().dropLast().utf8.allSatisfy({
          (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">")
        }),
        message.inReplyTo.count > 2
      else {
        throw RPCError.field(name("in_reply_to"), .invalidArgument, "\(name("in_reply_to")) must be a Message-ID such as <id@example.com>")
      }
      queued.inReplyTo = message.inReplyTo
    }
    queued.autoSubmitted = message.autoSubmitted
    if channel == "whatsapp", message.recipient.wholeMatch(of: /\+[1-9][0-9]{6,14}/) == nil {
      throw RPCError.field(
        name("recipient"), .invalidArgument, "\(name("recipient")) must be an E.164 number such as +14155550123 on WhatsApp")
    }
    queued.payload = try ChannelPayload.validate(message, channel: channel, name: name)
    if channel == "sms", !message.ignoreQuietHours {
      queued.quiet = QueuedMessage.Quiet(
        window: window ?? QuietWindow(start: 0, end: 0), zones: message.timeZone.isEmpty ? [] : [message.timeZone])
    }
    return queued
  }

  static func channelName(_ channel: Herald_Delivery_V1_Channel) -> String? {
    switch channel {
    case .email: "email"
    case .sms: "sms"
    case .push: "push"
    case .whatsapp: "whatsapp"
    case .unspecified, .UNRECOGNIZED: nil
    }
  }

  static func channel(_ name: String) -> Herald_Delivery_V1_Channel {
    switch name {
    case "email": .email
    case "sms": .sms
    case "push": .push
    case "whatsapp": .whatsapp
    default: .unspecified
    }
  }
}
