import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Metrics
import SwiftProtobuf

/// Inbound messages (SPEC §11): SMS and e-mail a provider forwards, verified with the provider's
/// webhook secret, stored once, matched to what they answer; SMS keywords act at once on the
/// suppression list and the queue, and the campaign service reads the feed for consent and
/// subscriber links.
extension DeliveryService {
  package func ingestInbound(
    request: Herald_Delivery_V1_IngestInboundRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_IngestInboundResponse {
    guard ["sms", "email"].contains(request.channel) else {
      throw RPCError.field("channel", .invalidArgument, "channel must be sms or email")
    }
    if providers.entry(named: request.provider) == nil { try await providers.refresh() }
    // As for delivery webhooks: an unknown provider, one of another channel or one without a
    // webhook secret is refused exactly as a bad signature is.
    let entry = providers.entry(named: request.provider)
    let secret = entry.flatMap { $0.config.channel == request.channel ? $0.config.webhookSecret : nil }
    try Self.verifyInbound(request, secret: secret ?? Self.unguessableSecret)
    guard secret != nil else { throw RPCError.field("signature", .unauthenticated, WebhookSignature.Problem.mismatch.description) }
    if request.verifyOnly { return .init() }

    let payload =
      request.channel == "sms"
      ? try InboundPayload.sms(request.body, contentType: request.contentType)
      : try InboundPayload.email(request.body, contentType: request.contentType)
    let settings = entry?.config.definition.smsKeywords ?? .init()
    var decision = Self.decide(payload, settings: settings)
    // An e-mail to a signed address of Herald's: the message it names is the one answered, and
    // mail to a List-Unsubscribe address unsubscribes (an automatic one too: that is how some
    // mailbox providers send it).
    if let token = payload.recipients.lazy.compactMap({ AddressToken.open(address: $0, keys: self.addressKeys) }).first {
      decision.answering = token.message
      if token.kind == .unsubscribe {
        decision = InboundDecision(action: "unsubscribe", keyword: "List-Unsubscribe", answering: token.message)
      }
    }
    // Herald's own messages coming back (a loop between two automatons): stored, never acted on.
    if decision.action != "unsubscribe", isOwnSender(payload) {
      decision = InboundDecision(action: "auto_reply", keyword: "sent by Herald itself (\(payload.from))")
    }
    let (record, duplicate) = try await store.ingestInbound(payload, provider: request.provider, decision: decision)
    if !duplicate {
      Counter(label: "herald_delivery_inbound_total", dimensions: [("channel", record.channel), ("action", record.action)])
        .increment()
    }
    var response = Herald_Delivery_V1_IngestInboundResponse()
    response.inbound = Self.inboundMessage(record)
    response.duplicate = duplicate
    return response
  }

  /// Whether the sender is one of Herald's own: an SMS provider's number, an SMTP provider's From
  /// address, or an address on its inbound domain.
  func isOwnSender(_ payload: InboundPayload) -> Bool {
    providers.all.contains { entry in
      switch entry.config.kind {
      case .httpSMS(let settings): payload.channel == "sms" && settings.from == payload.from
      case .smtp(let settings):
        payload.channel == "email"
          && (settings.fromAddress.lowercased() == payload.from
            || settings.inboundDomain.map { MailAddress.domain(of: payload.from) == $0 } == true)
      case .whatsapp(let settings): payload.channel == "whatsapp" && settings.phoneNumber == payload.from
      case .webhook, .apns, .fcm: false
      }
    }
  }

  /// The X-Twilio-Signature when given (the form shape of the common SMS APIs), else the
  /// X-Herald-Signature over the body.
  static func verifyInbound(_ request: Herald_Delivery_V1_IngestInboundRequest, secret: String) throws(RPCError) {
    if !request.twilioSignature.isEmpty {
      guard
        InboundPayload.twilioSignatureHolds(
          request.twilioSignature, key: secret, url: request.url, body: request.body, contentType: request.contentType)
      else {
        throw RPCError.field("signature", .unauthenticated, "the X-Twilio-Signature does not match the URL and parameters")
      }
      return
    }
    do throws(WebhookSignature.Problem) {
      try WebhookSignature.verify(header: request.heraldSignature, secret: secret, body: request.body)
    } catch {
      throw RPCError.field("signature", .unauthenticated, error.description)
    }
  }

  /// What a message is taken as: an SMS by its keywords; an e-mail as a reply (or none when it
  /// answers nothing of Herald's) unless it is an automatic message.
  static func decide(_ payload: InboundPayload, settings: Herald_Delivery_V1_SmsKeywordSettings) -> InboundDecision {
    if payload.channel == "email" {
      if let automatic = payload.automatic { return InboundDecision(action: "auto_reply", keyword: automatic) }
      return InboundDecision(action: "none", keyword: "")
    }
    let texts = SMSKeywords.Texts(settings)
    switch SMSKeywords(settings).classify(payload.text) {
    case .stop(let keyword): return InboundDecision(action: "stop", keyword: keyword, response: texts.stop)
    case .start(let keyword): return InboundDecision(action: "start", keyword: keyword, response: texts.start)
    case .help(let keyword): return InboundDecision(action: "help", keyword: keyword, response: texts.help)
    case .review(let words): return InboundDecision(action: "review", keyword: words)
    case .other: return InboundDecision(action: "none", keyword: "")
    }
  }

  static func inboundMessage(_ record: InboundRecord) -> Herald_Delivery_V1_InboundMessage {
    var message = Herald_Delivery_V1_InboundMessage()
    message.id = record.id.lowercasedString
    message.provider = record.provider
    message.providerMessageID = record.providerMessageID
    message.channel = record.channel
    message.from = record.sender
    message.to = record.recipient
    message.subject = record.subject
    message.text = record.body
    message.receivedAt = Google_Protobuf_Timestamp(date: record.receivedAt)
    message.answersMessageID = record.answers?.lowercasedString ?? ""
    message.campaignID = record.campaignID?.lowercasedString ?? ""
    message.subscriberID = record.subscriberID?.lowercasedString ?? ""
    message.action = record.action
    message.keyword = record.keyword
    message.responseMessageID = record.response?.lowercasedString ?? ""
    return message
  }

  static let inboundActions = [
    "reply", "stop", "start", "help", "review", "stop_reviewed", "dismissed", "unsubscribe", "auto_reply", "none",
  ]

  package func listInboundMessages(
    request: Herald_Delivery_V1_ListInboundMessagesRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListInboundMessagesResponse {
    guard request.action.isEmpty || Self.inboundActions.contains(request.action) else {
      throw RPCError.field("action", .invalidArgument, "action must be one of \(Self.inboundActions.joined(separator: ", "))")
    }
    guard (0...1000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 1,000 (0 means 100)")
    }
    let cursor = request.cursor.isEmpty ? nil : try RPCError.uuid(request.cursor, field: "cursor")
    let limit = request.limit == 0 ? 100 : Int(request.limit)
    let records = try await store.inboundMessages(
      action: request.action.isEmpty ? nil : request.action, before: cursor, limit: limit)
    var response = Herald_Delivery_V1_ListInboundMessagesResponse()
    response.messages = records.map(Self.inboundMessage)
    if records.count == limit, let last = records.last { response.nextCursor = last.id.lowercasedString }
    return response
  }

  package func reviewInboundMessage(
    request: Herald_Delivery_V1_ReviewInboundMessageRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_InboundMessage {
    let id = try RPCError.uuid(request.id, field: "id")
    guard ["stop", "dismiss"].contains(request.decision) else {
      throw RPCError.field("decision", .invalidArgument, "decision must be stop or dismiss")
    }
    let providers = self.providers
    let outcome = try await store.reviewInbound(id: id, stop: request.decision == "stop") { record in
      SMSKeywords.Texts(providers.entry(named: record.provider)?.config.definition.smsKeywords ?? .init()).stop
    }
    switch outcome {
    case .decided(let record): return Self.inboundMessage(record)
    case .notFound: throw RPCError(code: .notFound, message: "no inbound message \(id.lowercasedString)")
    case .notWaiting(let action):
      throw RPCError(
        code: .failedPrecondition, message: "inbound message \(id.lowercasedString) is not waiting for review (it was taken as \(action))")
    }
  }

  package func listInboundFeed(
    request: Herald_Delivery_V1_ListInboundFeedRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListInboundFeedResponse {
    guard let cursor = FeedCursor(request.cursor) else {
      throw RPCError.field("cursor", .invalidArgument, "cursor '\(request.cursor)' is not one this feed gave")
    }
    guard (0...5000).contains(request.limit) else {
      throw RPCError.field("limit", .invalidArgument, "limit must be from 1 to 5,000 (0 means 1,000)")
    }
    let (records, next) = try await store.inboundFeed(after: cursor, limit: request.limit == 0 ? 1000 : Int(request.limit))
    var response = Herald_Delivery_V1_ListInboundFeedResponse()
    response.messages = records.map(Self.inboundMessage)
    response.nextCursor = next.text
    return response
  }

  package func linkInboundSubscribers(
    request: Herald_Delivery_V1_LinkInboundSubscribersRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_LinkInboundSubscribersResponse {
    guard request.links.count <= 5000 else {
      throw RPCError.field("links", .invalidArgument, "links holds \(request.links.count); at most 5,000 per call")
    }
    let links = try request.links.enumerated().map { index, link throws(RPCError) in
      (
        inbound: try RPCError.uuid(link.inboundID, field: "links[\(index)].inbound_id"),
        subscriber: try RPCError.uuid(link.subscriberID, field: "links[\(index)].subscriber_id")
      )
    }
    var response = Herald_Delivery_V1_LinkInboundSubscribersResponse()
    response.linked = Int32(try await store.linkInbound(links))
    return response
  }
}
