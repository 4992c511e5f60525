import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

package struct Consent: Sendable, Equatable {
  package var subscribed: Bool
  package var source: String?
  package var consentedAt: Date?
  package var unsubscribedAt: Date?
}

package struct SubscriberRecord: Sendable, Equatable {
  package var id: UUID
  package var email: String?
  package var phone: String?
  package var firstName: String
  package var lastName: String
  package var attributesJSON: String
  package var emailConsent: Consent
  package var smsConsent: Consent
  package var status: String
  package var createdAt: Date
  package var updatedAt: Date
}

package struct NewSubscriber: Sendable {
  package var email: String?
  package var phone: String?
  package var firstName: String
  package var lastName: String
  package var attributesJSON: String
  package var emailConsentSource: String?
  package var smsConsentSource: String?
}

package enum SubscriberStoreError: Error, Equatable {
  /// The normalised e-mail or phone belongs to another subscriber.
  case duplicate(field: String)
}

package protocol SubscriberStore: Sendable {
  func create(_ subscriber: NewSubscriber) async throws -> SubscriberRecord
  func get(id: UUID) async throws -> SubscriberRecord?
}

package struct PostgresSubscriberStore: SubscriberStore {
  let client: PostgresClient
  let logger: Logger

  package init(client: PostgresClient, logger: Logger) {
    self.client = client
    self.logger = logger
  }

  static let columns = """
    id, email, phone, first_name, last_name, attributes::text AS attributes, email_subscribed, email_consent_source,
    email_consented_at, email_unsubscribed_at, sms_subscribed, sms_consent_source, sms_consented_at,
    sms_unsubscribed_at, status, created_at, updated_at
    """

  package func create(_ subscriber: NewSubscriber) async throws -> SubscriberRecord {
    do {
      let rows = try await client.query(
        """
        INSERT INTO campaign.subscribers (
          email, phone, first_name, last_name, attributes,
          email_subscribed, email_consent_source, email_consented_at,
          sms_subscribed, sms_consent_source, sms_consented_at)
        VALUES (
          \(subscriber.email), \(subscriber.phone), \(subscriber.firstName), \(subscriber.lastName),
          \(subscriber.attributesJSON)::jsonb,
          \(subscriber.emailConsentSource != nil), \(subscriber.emailConsentSource),
          CASE WHEN \(subscriber.emailConsentSource != nil) THEN now() END,
          \(subscriber.smsConsentSource != nil), \(subscriber.smsConsentSource),
          CASE WHEN \(subscriber.smsConsentSource != nil) THEN now() END)
        RETURNING \(unescaped: Self.columns)
        """, logger: logger)
      guard let record = try await rows.collect().first.map(Self.record) else {
        throw PostgresError.protocol("INSERT ... RETURNING gave no row")
      }
      return record
    } catch where error.sqlState == "23505" {
      let constraint = error.constraintName ?? ""
      throw SubscriberStoreError.duplicate(field: constraint.contains("phone") ? "phone" : "email")
    }
  }

  package func get(id: UUID) async throws -> SubscriberRecord? {
    let rows = try await client.query(
      "SELECT \(unescaped: Self.columns) FROM campaign.subscribers WHERE id = \(id)", logger: logger)
    return try await rows.collect().first.map(Self.record)
  }

  static func record(_ row: PostgresRow) throws -> SubscriberRecord {
    let cells = row.makeRandomAccess()
    func consent(_ channel: String) throws -> Consent {
      Consent(
        subscribed: try cells["\(channel)_subscribed"].decode(Bool.self),
        source: try cells["\(channel)_consent_source"].decode(String?.self),
        consentedAt: try cells["\(channel)_consented_at"].decode(Date?.self),
        unsubscribedAt: try cells["\(channel)_unsubscribed_at"].decode(Date?.self))
    }
    return SubscriberRecord(
      id: try cells["id"].decode(UUID.self),
      email: try cells["email"].decode(String?.self),
      phone: try cells["phone"].decode(String?.self),
      firstName: try cells["first_name"].decode(String.self),
      lastName: try cells["last_name"].decode(String.self),
      attributesJSON: try cells["attributes"].decode(String.self),
      emailConsent: try consent("email"),
      smsConsent: try consent("sms"),
      status: try cells["status"].decode(String.self),
      createdAt: try cells["created_at"].decode(Date.self),
      updatedAt: try cells["updated_at"].decode(Date.self))
  }
}
