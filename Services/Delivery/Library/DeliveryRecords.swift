import Foundation
import HeraldCore

/// A checked message to queue (a message of EnqueueMessages, or SendMessage's).
package struct QueuedMessage: Sendable, Equatable {
  package var idempotencyKey: String
  package var channel: String
  package var recipient: String
  package var subject: String
  package var body: String
  /// "text" or "html".
  package var format: String
  package var textBody: String?
  package var listUnsubscribeURL: String?
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var notBefore: Date?
  /// SMS: the window it may be delivered in and the recipient's time zones (SPEC §11); nil for
  /// messages delivered at any hour.
  package var quiet: Quiet?
  /// Why it can never be delivered (its quiet hours leave no time of day): it is recorded failed.
  package var undeliverable: String?
  /// Why it waits, when it waits for its quiet hours (its `queued` event's detail).
  package var note: String?
  /// E-mail: the Message-ID it answers, and whether it is an automatic answer (RFC 3834).
  package var inReplyTo: String?
  package var autoSubmitted = false
  /// Push and WhatsApp template messages: what they carry besides subject and body.
  package var payload: ChannelPayload?

  package struct Quiet: Sendable, Equatable {
    package var window: QuietWindow
    package var zones: [String]
  }

  package init(
    idempotencyKey: String, channel: String, recipient: String, subject: String, body: String, format: String = "text",
    textBody: String? = nil, listUnsubscribeURL: String? = nil, campaignID: UUID? = nil, subscriberID: UUID? = nil,
    notBefore: Date? = nil
  ) {
    self.idempotencyKey = idempotencyKey
    self.channel = channel
    self.recipient = recipient
    self.subject = subject
    self.body = body
    self.format = format
    self.textBody = textBody
    self.listUnsubscribeURL = listUnsubscribeURL
    self.campaignID = campaignID
    self.subscriberID = subscriberID
    self.notBefore = notBefore
  }
}

/// What became of one queued message: its id, whether its key had been accepted before, and
/// whether its recipient is suppressed.
package struct EnqueueOutcome: Sendable, Equatable {
  package var idempotencyKey: String
  package var messageID: UUID
  package var duplicate: Bool
  package var suppressed: Bool = false
}

/// One event of a message's history, as the feed and GetMessage show it.
package struct FeedEvent: Sendable, Equatable {
  package var id: Int64
  package var messageID: UUID
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var status: String
  package var detail: String
  package var costCents: Int64
  package var occurredAt: Date
  /// An open or click through Herald's tracking links judged a machine's, and the signals seen.
  package var engagement = EngagementSignals(machine: false, signals: [])
  /// A bounced push notification's "<platform>:<token>".
  package var refusedPushToken: String? = nil
}

/// A message a worker holds the lease of.
package struct ClaimedMessage: Sendable, Equatable {
  package var message: OutgoingMessage
  package var attempts: Int
  /// `sending`, or `suppressed`/`expired` when the claim settled it at once.
  package var status: String
}

/// How a worker leaves a claimed message.
package struct Settlement: Sendable, Equatable {
  package enum Outcome: Sendable, Equatable {
    case sent(provider: String, providerMessageID: String?, costCents: Int64)
    /// Back to the queue after `delay`; `countsAsAttempt` false for deferrals (rate limit,
    /// warm-up cap, every breaker open) that never reached a provider.
    case retry(delay: Duration, countsAsAttempt: Bool, eventStatus: String)
    case dead
    case failed
    case bounced
    case unknown(provider: String)
  }

  package var id: UUID
  package var outcome: Outcome
  package var detail: String
  /// The send may have been charged although it is retried (an ambiguous send sent again): its
  /// reservation becomes spend instead of being given back.
  package var charged = false
  /// The provider the outcome is about (the one that sent, refused, failed or deferred it last);
  /// nil when no provider was tried. Not stored: it labels the sends metric.
  package var provider: String?

  package init(id: UUID, outcome: Outcome, detail: String, charged: Bool = false, provider: String? = nil) {
    self.id = id
    self.outcome = outcome
    self.detail = detail
    self.charged = charged
    switch outcome {
    case .sent(let name, _, _), .unknown(let name): self.provider = provider ?? name
    case .retry, .dead, .failed, .bounced: self.provider = provider
    }
  }
}

/// A message as the API shows it.
package struct MessageRecord: Sendable, Equatable {
  package var id: UUID
  package var idempotencyKey: String
  package var channel: String
  package var recipient: String
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var status: String
  package var attempts: Int
  package var provider: String?
  package var providerMessageID: String?
  package var costCents: Int64
  package var lastError: String?
  package var notBefore: Date
  package var createdAt: Date
  package var updatedAt: Date
  package var ambiguous: Bool
}

/// One event a provider's webhook reports.
package struct ProviderEvent: Sendable, Equatable {
  /// delivered, bounced, failed, opened, clicked or complained.
  package var type: String
  /// Herald's message id, or the provider's own id for the message.
  package var messageID: UUID?
  package var providerMessageID: String?
  /// hard or soft, for bounces.
  package var bounce: String?
  package var detail: String
}

/// An address on the suppression list.
package struct SuppressionRecord: Sendable, Equatable {
  package var address: String
  package var reason: String
  package var detail: String
  package var createdAt: Date
}

/// A campaign's spend cap: its budget and what its sends have spent.
package struct SpendCapRecord: Sendable, Equatable {
  package var budgetCents: Int64
  package var spentCents: Int64
}

/// A warm-up schedule with where its identity stands today.
package struct WarmupScheduleRecord: Sendable, Equatable {
  package var sendingIdentity: String
  package var dailyCaps: [Int64]
  /// The identity's first day of sending; nil before it has sent.
  package var startedOn: Date?
  /// Today's day number (1 on the first day); 0 before the identity has sent.
  package var today: Int
  package var sentToday: Int64
}

/// What a queued message carries beyond the common columns, when it carries anything: written to
/// the batch insert as one JSON text (keys left out when unset).
struct QueuedExtras: Encodable {
  var quietZones: [String]?
  var quietStart: Int?
  var quietEnd: Int?
  var undeliverable: String?
  var inReplyTo: String?
  var autoSubmitted: Bool?
  var note: String?
  var payload: ChannelPayload?

  init(_ message: QueuedMessage) {
    quietZones = message.quiet?.zones
    quietStart = message.quiet?.window.start
    quietEnd = message.quiet?.window.end
    undeliverable = message.undeliverable
    inReplyTo = message.inReplyTo
    autoSubmitted = message.autoSubmitted ? true : nil
    note = message.note
    payload = message.payload
  }

  var isEmpty: Bool {
    quietZones == nil && undeliverable == nil && inReplyTo == nil && autoSubmitted == nil && note == nil && payload == nil
  }

  enum CodingKeys: String, CodingKey {
    case quietZones = "quiet_zones"
    case quietStart = "quiet_start"
    case quietEnd = "quiet_end"
    case undeliverable
    case inReplyTo = "in_reply_to"
    case autoSubmitted = "auto_submitted"
    case note
    case payload
  }
}
