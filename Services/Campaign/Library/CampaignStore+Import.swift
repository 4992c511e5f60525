import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// The bulk import's writes (SPEC §2): a chunk of checked rows in one transaction. Consent from
/// an import never overrides an earlier unsubscribe.
extension CampaignStore {
  /// Writes the rows in one transaction, each matched to an existing subscriber by its e-mail or
  /// phone; returns each row's outcome in order. A database error fails the whole chunk.
  func importRows(_ rows: [SubscriberImporter.Row], options: SubscriberImporter.Options) async throws -> [SubscriberImporter.Outcome] {
    try await transaction { connection in
      var outcomes: [SubscriberImporter.Outcome] = []
      for row in rows { outcomes.append(try await importRow(row, options: options, on: connection)) }
      return outcomes
    }
  }

  private func importRow(
    _ row: SubscriberImporter.Row, options: SubscriberImporter.Options, on connection: PostgresConnection
  ) async throws -> SubscriberImporter.Outcome {
    let new = row.subscriber
    let matches = try await connection.query(
      """
      SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers
      WHERE (email = \(new.email) AND \(new.email)::text IS NOT NULL) OR (phone = \(new.phone) AND \(new.phone)::text IS NOT NULL)
      FOR UPDATE
      """, logger: logger
    ).collect().map(Self.subscriberRecord)
    let outcome: SubscriberImporter.Outcome
    let id: UUID
    switch matches.count {
    case 0:
      let inserted = try await connection.query(
        """
        INSERT INTO campaign.subscribers (
          email, phone, first_name, last_name, attributes,
          email_subscribed, email_consent_source, email_consented_at, sms_subscribed, sms_consent_source, sms_consented_at)
        VALUES (
          \(new.email), \(new.phone), \(new.firstName), \(new.lastName), \(new.attributesJSON)::jsonb,
          \(new.emailConsentSource != nil), \(new.emailConsentSource), CASE WHEN \(new.emailConsentSource != nil) THEN now() END,
          \(new.smsConsentSource != nil), \(new.smsConsentSource), CASE WHEN \(new.smsConsentSource != nil) THEN now() END)
        ON CONFLICT DO NOTHING
        RETURNING id, now()
        """, logger: logger
      ).collect().first?.decode((UUID, Date).self)
      // Another import inserted the same address a moment ago: report it as existing.
      guard let (newID, now) = inserted else { return .existing }
      for (channel, source) in [("email", new.emailConsentSource), ("sms", new.smsConsentSource)] {
        guard let source else { continue }
        try await insertConsentEvent(
          ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: now), for: newID, on: connection)
      }
      (id, outcome) = (newID, .created)
    case 1:
      let existing = matches[0]
      id = existing.id
      if let email = new.email, let other = existing.email, email != other {
        return .failed(field: "email", message: "the phone belongs to a subscriber with another email (\(other))")
      }
      if let phone = new.phone, let other = existing.phone, phone != other {
        return .failed(field: "phone", message: "the email belongs to a subscriber with another phone")
      }
      guard options.updateExisting else {
        outcome = .existing
        break
      }
      try await connection.query(
        """
        UPDATE campaign.subscribers SET
          email = coalesce(email, \(new.email)), phone = coalesce(phone, \(new.phone)),
          first_name = CASE WHEN \(new.firstName) <> '' THEN \(new.firstName) ELSE first_name END,
          last_name = CASE WHEN \(new.lastName) <> '' THEN \(new.lastName) ELSE last_name END,
          attributes = attributes || \(new.attributesJSON)::jsonb, updated_at = now()
        WHERE id = \(id)
        """, logger: logger)
      // Consent is added only where it was never withdrawn: an import cannot undo an unsubscribe.
      for (channel, source, consent) in [
        ("email", new.emailConsentSource, existing.emailConsent), ("sms", new.smsConsentSource, existing.smsConsent),
      ] {
        guard let source, !consent.subscribed, consent.unsubscribedAt == nil else { continue }
        let now = try await connection.query(
          """
          UPDATE campaign.subscribers SET \(unescaped: channel)_subscribed = true, \(unescaped: channel)_consent_source = \(source),
            \(unescaped: channel)_consented_at = now()
          WHERE id = \(id) AND \(unescaped: channel == "email" ? "email" : "phone") IS NOT NULL
          RETURNING now()
          """, logger: logger
        ).collect().first?.decode(Date.self)
        if let now {
          try await insertConsentEvent(
            ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: now), for: id, on: connection)
        }
      }
      outcome = .updated
    default:
      return .failed(field: "email", message: "the email and the phone belong to two different subscribers")
    }
    if let list = options.listID {
      try await connection.query(
        "INSERT INTO campaign.list_members (list_id, subscriber_id) VALUES (\(list), \(id)) ON CONFLICT DO NOTHING", logger: logger)
    }
    return outcome
  }
}
