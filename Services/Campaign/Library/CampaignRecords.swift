import Foundation

/// One channel's consent as stored (SPEC §2: subscribed, with its source and times).
package struct Consent: Sendable, Equatable {
  package var subscribed: Bool
  package var source: String?
  package var consentedAt: Date?
  package var unsubscribedAt: Date?
}

/// A subscriber as stored.
package struct SubscriberRecord: Sendable, Equatable {
  package var id: UUID
  package var email: String?
  package var phone: String?
  package var firstName: String
  package var lastName: String
  package var attributesJSON: String
  package var emailConsent: Consent
  package var smsConsent: Consent
  /// The WhatsApp number (E.164) and its own consent.
  package var whatsapp: String?
  package var whatsappConsent: Consent
  /// When the subscriber unsubscribed from push; nil while push is on.
  package var pushUnsubscribedAt: Date? = nil
  package var status: String
  package var createdAt: Date
  package var updatedAt: Date

  /// The consent of a channel: email, sms or whatsapp (push has tokens instead).
  package static func consent(_ channel: String) -> WritableKeyPath<SubscriberRecord, Consent> {
    switch channel {
    case "email": \.emailConsent
    case "whatsapp": \.whatsappConsent
    default: \.smsConsent
    }
  }

  /// The contact a channel's consent needs.
  package func contact(_ channel: String) -> String? {
    switch channel {
    case "email": email
    case "whatsapp": whatsapp
    default: phone
    }
  }
}

/// A checked subscriber to create (CreateSubscriber, or a row of an import).
package struct NewSubscriber: Sendable {
  package var email: String?
  package var phone: String?
  package var firstName: String
  package var lastName: String
  package var attributesJSON: String
  package var emailConsentSource: String?
  package var smsConsentSource: String?
  package var whatsapp: String? = nil
  package var whatsappConsentSource: String? = nil
  /// Devices' push tokens to register with it.
  package var pushTokens: [NewPushToken] = []
}

/// A checked push token to register.
package struct NewPushToken: Sendable, Equatable {
  package var platform: String
  package var token: String
  package var appID: String
}

/// One change of consent, kept forever as proof (SPEC §2: provenance of every consent).
package struct ConsentEvent: Sendable, Equatable {
  package var channel: String
  package var subscribed: Bool
  package var source: String
  package var occurredAt: Date
  /// The campaign whose message led to the change (an unsubscribe link).
  package var campaignID: UUID? = nil
}

/// How many subscribers an audience (list or segment) holds, and how many of them can be sent to
/// on each channel.
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

/// One A/B variant of a campaign: its template, weight and (once started) recipients.
package struct VariantRecord: Sendable, Equatable {
  package var name: String
  package var templateID: UUID
  package var weight: Int
  package var recipients: Int64
}

/// A checked campaign to create (in `draft`).
package struct NewCampaign: Sendable {
  package var name: String
  package var channel: String
  package var listID: UUID?
  package var segmentID: UUID?
  package var variants: [VariantRecord]
  package var budgetCents: Int64?
  package var trackOpens = false
  package var trackClicks = false
  /// SMS: the delivery window, "HH:MM-HH:MM"; nil for the installation's.
  package var quietHours: String?
  /// Send as an A/B test that decides (SPEC §13).
  package var abTest: ABTestSettings?
}

package struct CampaignRecord: Sendable {
  /// Every status of the status machine (SPEC §2), in its order.
  package static let statuses = ["draft", "scheduled", "sending", "sent", "paused", "cancelled", "failed"]

  package var id: UUID
  package var name: String
  package var channel: String
  package var listID: UUID?
  package var segmentID: UUID?
  package var variants: [VariantRecord]
  package var budgetCents: Int64?
  package var trackOpens = false
  package var trackClicks = false
  package var quietHours: String?
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
  /// Its A/B test, when it has one (SPEC §13).
  package var abTest: ABTestRecord?
}

/// A subscriber's engagement, from the delivery events taken in (SPEC §2).
package struct EngagementRecord: Sendable, Equatable {
  package var subscriberID: UUID
  package var score: Int
  package var delivered: Int64
  package var opened: Int64
  package var clicked: Int64
  package var bounced: Int64
  package var complained: Int64
  package var lastEngagedAt: Date?
  package var lastEventAt: Date?
}

/// One row of a campaign's daily rollup: events of one status for one variant on one day.
package struct DailyStatRecord: Sendable, Equatable {
  package var variant: String
  /// `YYYY-MM-DD`.
  package var day: String
  package var status: String
  package var events: Int64
  package var costCents: Int64
  /// Conversions' value (status `converted`).
  package var valueCents: Int64 = 0
}
