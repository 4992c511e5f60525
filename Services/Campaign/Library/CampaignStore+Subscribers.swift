import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// Subscribers and their consent history (SPEC §2).
extension CampaignStore {
  static let subscriberColumns = """
    id, email, phone, first_name, last_name, attributes::text AS attributes, email_subscribed, email_consent_source,
    email_consented_at, email_unsubscribed_at, sms_subscribed, sms_consent_source, sms_consented_at,
    sms_unsubscribed_at, whatsapp, whatsapp_subscribed, whatsapp_consent_source, whatsapp_consented_at,
    whatsapp_unsubscribed_at, push_unsubscribed_at, status, created_at, updated_at
    """

  /// Creates a subscriber with the consent events of the consent it was given, in one
  /// transaction; `CampaignStoreError.duplicate` when its e-mail or phone is taken.
  package func createSubscriber(_ subscriber: NewSubscriber) async throws -> SubscriberRecord {
    do {
      return try await transaction { connection in
        let rows = try await connection.query(
          """
          INSERT INTO campaign.subscribers (
            email, phone, first_name, last_name, attributes,
            email_subscribed, email_consent_source, email_consented_at,
            sms_subscribed, sms_consent_source, sms_consented_at,
            whatsapp, whatsapp_subscribed, whatsapp_consent_source, whatsapp_consented_at)
          VALUES (
            \(subscriber.email), \(subscriber.phone), \(subscriber.firstName), \(subscriber.lastName),
            \(subscriber.attributesJSON)::jsonb,
            \(subscriber.emailConsentSource != nil), \(subscriber.emailConsentSource),
            CASE WHEN \(subscriber.emailConsentSource != nil) THEN now() END,
            \(subscriber.smsConsentSource != nil), \(subscriber.smsConsentSource),
            CASE WHEN \(subscriber.smsConsentSource != nil) THEN now() END,
            \(subscriber.whatsapp), \(subscriber.whatsappConsentSource != nil), \(subscriber.whatsappConsentSource),
            CASE WHEN \(subscriber.whatsappConsentSource != nil) THEN now() END)
          RETURNING \(unescaped: Self.subscriberColumns)
          """, logger: logger)
        guard let record = try await rows.collect().first.map(Self.subscriberRecord) else {
          throw PostgresError.protocol("INSERT ... RETURNING gave no row")
        }
        for (channel, source, at) in [
          ("email", subscriber.emailConsentSource, record.emailConsent.consentedAt),
          ("sms", subscriber.smsConsentSource, record.smsConsent.consentedAt),
          ("whatsapp", subscriber.whatsappConsentSource, record.whatsappConsent.consentedAt),
        ] {
          guard let source, let at else { continue }
          try await insertConsentEvent(
            ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: at), for: record.id, on: connection)
        }
        try await self.registerPushTokens(subscriber.pushTokens.map { (record.id, $0) }, on: connection)
        return record
      }
    } catch  where error.sqlState == "23505" {
      throw CampaignStoreError.duplicate(field: Self.duplicateField(of: error))
    }
  }

  /// The contact field a unique violation on `campaign.subscribers` is about.
  static func duplicateField(of error: any Error) -> String {
    let constraint = error.constraintName ?? ""
    return constraint.contains("whatsapp") ? "whatsapp" : constraint.contains("phone") ? "phone" : "email"
  }

  /// Keeps one change of consent as proof, in the caller's transaction.
  func insertConsentEvent(_ event: ConsentEvent, for id: UUID, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at, campaign_id)
      VALUES (\(id), \(event.channel), \(event.subscribed), \(event.source), \(event.occurredAt), \(event.campaignID))
      """, logger: logger)
  }

  package func subscriber(id: UUID) async throws -> SubscriberRecord? {
    let rows = try await client.query(
      "SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers WHERE id = \(id)", logger: logger)
    return try await rows.collect().first.map(Self.subscriberRecord)
  }

  /// Locks the subscriber, lets `change` edit it (given the transaction's time) and return the
  /// consent events it caused, then writes both in the same transaction. nil when no such id;
  /// errors thrown by `change` come back as they were thrown.
  /// `erasing`: the change may erase the subscriber, whose journeys then end (SPEC §12): the
  /// journeys' locks are taken first, in the order the journey workers take them.
  /// `retiringPushTokens`: the subscriber's live push tokens are retired with this reason (with
  /// `pushOnlyIfTokens`, for an unsubscribe from every channel, only if the subscriber has had one).
  package func updateSubscriber(
    id: UUID, erasing: Bool = false, retiringPushTokens: String? = nil, pushOnlyIfTokens: Bool = false,
    _ change: @escaping @Sendable (inout SubscriberRecord, Date) throws -> [ConsentEvent]
  ) async throws -> SubscriberRecord? {
    do {
      return try await transaction { connection -> SubscriberRecord? in
        if erasing { try await self.lockJourneys(of: id, on: connection) }
        let rows = try await connection.query(
          "SELECT \(unescaped: Self.subscriberColumns), now() AS now FROM campaign.subscribers WHERE id = \(id) FOR UPDATE",
          logger: logger
        ).collect()
        guard let row = rows.first else { return nil }
        var record = try Self.subscriberRecord(row)
        let now = try row.makeRandomAccess()["now"].decode(Date.self)
        let original = record
        var events = try change(&record, now)
        if let reason = retiringPushTokens, original.status != "erased" || reason == "erased" {
          // Push's unsubscribe is recorded when it is new (a second one changes nothing).
          let newlyOff = try await self.retirePushTokens(of: id, reason: reason, onlyIfTokens: pushOnlyIfTokens, on: connection)
          if !newlyOff { events.removeAll { $0.channel == "push" } }
          if reason == "unsubscribed" && newlyOff && original.pushUnsubscribedAt == nil { record.pushUnsubscribedAt = now }
        } else {
          events.removeAll { $0.channel == "push" }
        }
        // A change that changes nothing (a second unsubscribe or erase) writes nothing.
        if record == original && events.isEmpty { return original }
        let written = try await connection.query(
          """
          UPDATE campaign.subscribers SET
            email = \(record.email), phone = \(record.phone), first_name = \(record.firstName),
            last_name = \(record.lastName), attributes = \(record.attributesJSON)::jsonb,
            email_subscribed = \(record.emailConsent.subscribed), email_consent_source = \(record.emailConsent.source),
            email_consented_at = \(record.emailConsent.consentedAt), email_unsubscribed_at = \(record.emailConsent.unsubscribedAt),
            sms_subscribed = \(record.smsConsent.subscribed), sms_consent_source = \(record.smsConsent.source),
            sms_consented_at = \(record.smsConsent.consentedAt), sms_unsubscribed_at = \(record.smsConsent.unsubscribedAt),
            whatsapp = \(record.whatsapp), whatsapp_subscribed = \(record.whatsappConsent.subscribed),
            whatsapp_consent_source = \(record.whatsappConsent.source),
            whatsapp_consented_at = \(record.whatsappConsent.consentedAt),
            whatsapp_unsubscribed_at = \(record.whatsappConsent.unsubscribedAt),
            push_unsubscribed_at = \(record.pushUnsubscribedAt),
            status = \(record.status), updated_at = now()
          WHERE id = \(id)
          RETURNING \(unescaped: Self.subscriberColumns)
          """, logger: logger
        ).collect()
        for event in events {
          try await insertConsentEvent(event, for: id, on: connection)
        }
        if record.status == "erased" && original.status != "erased" {
          try await eraseJourneyData(of: id, on: connection)
        }
        return try written.first.map(Self.subscriberRecord)
      }
    } catch  where error.sqlState == "23505" {
      throw CampaignStoreError.duplicate(field: Self.duplicateField(of: error))
    }
  }

  /// Oldest first, after the subscriber `after` (keyset pagination on created_at, id);
  /// `CampaignStoreError.badPageToken` when `after` names no subscriber.
  package func subscribers(after: UUID?, limit: Int) async throws -> [SubscriberRecord] {
    let rows: PostgresRowSequence
    if let after {
      let exists =
        try await client.query("SELECT 1 FROM campaign.subscribers WHERE id = \(after)", logger: logger)
        .collect().count == 1
      guard exists else { throw CampaignStoreError.badPageToken }
      rows = try await client.query(
        """
        SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers
        WHERE (created_at, id) > (SELECT created_at, id FROM campaign.subscribers WHERE id = \(after))
        ORDER BY created_at, id LIMIT \(limit)
        """, logger: logger)
    } else {
      rows = try await client.query(
        "SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers ORDER BY created_at, id LIMIT \(limit)",
        logger: logger)
    }
    return try await rows.collect().map(Self.subscriberRecord)
  }

  /// Every change of the subscriber's consent, oldest first.
  package func consentHistory(of id: UUID) async throws -> [ConsentEvent] {
    var events: [ConsentEvent] = []
    let rows = try await client.query(
      """
      SELECT channel, subscribed, source, occurred_at, campaign_id FROM campaign.consent_events
      WHERE subscriber_id = \(id) ORDER BY id
      """, logger: logger)
    for try await (channel, subscribed, source, at, campaign) in rows.decode((String, Bool, String, Date, UUID?).self) {
      events.append(ConsentEvent(channel: channel, subscribed: subscribed, source: source, occurredAt: at, campaignID: campaign))
    }
    return events
  }

  /// Subscribers having one of these ids, normalised e-mails or phones.
  package func lookupSubscribers(ids: [UUID], emails: [String], phones: [String]) async throws -> [SubscriberRecord] {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers
      WHERE id = ANY(\(ids)::uuid[]) OR email = ANY(\(emails)::text[]) OR phone = ANY(\(phones)::text[])
      ORDER BY created_at, id
      """, logger: logger)
    return try await rows.collect().map(Self.subscriberRecord)
  }

  /// A row selected with `subscriberColumns`.
  static func subscriberRecord(_ row: PostgresRow) throws -> SubscriberRecord {
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
      whatsapp: try cells["whatsapp"].decode(String?.self),
      whatsappConsent: try consent("whatsapp"),
      pushUnsubscribedAt: try cells["push_unsubscribed_at"].decode(Date?.self),
      status: try cells["status"].decode(String.self),
      createdAt: try cells["created_at"].decode(Date.self),
      updatedAt: try cells["updated_at"].decode(Date.self))
  }
}
