import Foundation
import HeraldPostgres
import Logging
import PostgresNIO

/// The bulk import's writes (SPEC §2): a chunk of checked rows in one transaction. Consent from
/// an import never overrides an earlier unsubscribe.
extension CampaignStore {
  /// Writes the rows in one transaction, each matched to an existing subscriber by its e-mail or
  /// phone; returns each row's outcome in order. A database error fails the whole chunk.
  ///
  /// Set-based: one statement locks the chunk's matches, one inserts the new subscribers with
  /// their consent events, one updates the existing ones, one per channel adds consent, one adds
  /// list memberships. A row sharing an e-mail or phone with an earlier row of the chunk must see
  /// what that row wrote, so such rows (rare: the same person twice in one file) are written one
  /// by one after the others, which keeps the outcome of writing the rows in order.
  func importRows(_ rows: [SubscriberImporter.Row], options: SubscriberImporter.Options) async throws -> [SubscriberImporter.Outcome] {
    var together: [Int] = []
    var afterwards: [Int] = []
    var emails = Set<String>()
    var phones = Set<String>()
    for (index, row) in rows.enumerated() {
      let (email, phone) = (row.subscriber.email, row.subscriber.phone)
      let repeated = email.map(emails.contains) ?? false || phone.map(phones.contains) ?? false
      if repeated { afterwards.append(index) } else { together.append(index) }
      if let email { emails.insert(email) }
      if let phone { phones.insert(phone) }
    }
    return try await transaction { [together, afterwards] connection in
      let written = try await importTogether(together.map { rows[$0] }, options: options, on: connection)
      var outcomes = [SubscriberImporter.Outcome?](repeating: nil, count: rows.count)
      for (index, outcome) in zip(together, written) { outcomes[index] = outcome }
      for index in afterwards { outcomes[index] = try await importRow(rows[index], options: options, on: connection) }
      return outcomes.map { $0! }
    }
  }

  /// Gathers planner statistics for the subscribers table if it has never had any. Without
  /// them PostgreSQL guesses that each of a chunk's 500 addresses matches 0.5 % of the table and
  /// scans all of it for every chunk, so the first large import into a new installation slowed
  /// down as the table grew (the next autovacuum, up to a minute later, would have fixed it).
  /// Once there are statistics, estimates follow the table's size as it grows.
  func analyzeSubscribersIfNeverAnalyzed() async throws {
    let never =
      try await client.query(
        "SELECT reltuples < 0 FROM pg_class WHERE oid = 'campaign.subscribers'::regclass", logger: logger
      ).collect().first?.decode(Bool.self) ?? false
    guard never else { return }
    try await client.query("ANALYZE campaign.subscribers", logger: logger)
  }

  /// Rows whose e-mails and phones are all different from each other's.
  private func importTogether(
    _ rows: [SubscriberImporter.Row], options: SubscriberImporter.Options, on connection: PostgresConnection
  ) async throws -> [SubscriberImporter.Outcome] {
    guard !rows.isEmpty else { return [] }
    let emails = rows.compactMap(\.subscriber.email)
    let phones = rows.compactMap(\.subscriber.phone)
    // Locked in id order, so that two imports of overlapping files cannot deadlock.
    let matches = try await connection.query(
      """
      SELECT \(unescaped: Self.subscriberColumns) FROM campaign.subscribers
      WHERE email = ANY(\(emails)::text[]) OR phone = ANY(\(phones)::text[])
      ORDER BY id FOR UPDATE
      """, logger: logger
    ).collect().map(Self.subscriberRecord)
    var byEmail: [String: SubscriberRecord] = [:]
    var byPhone: [String: SubscriberRecord] = [:]
    for match in matches {
      if let email = match.email { byEmail[email] = match }
      if let phone = match.phone { byPhone[phone] = match }
    }

    var outcomes = [SubscriberImporter.Outcome?](repeating: nil, count: rows.count)
    var creating: [Int] = []
    var updating: [(index: Int, existing: SubscriberRecord)] = []
    var members: [UUID] = []
    for (index, row) in rows.enumerated() {
      let new = row.subscriber
      let byItsEmail = new.email.flatMap { byEmail[$0] }
      let byItsPhone = new.phone.flatMap { byPhone[$0] }
      switch (byItsEmail, byItsPhone) {
      case (nil, nil):
        creating.append(index)
      case (let one?, nil), (nil, let one?):
        if let email = new.email, let other = one.email, email != other {
          outcomes[index] = .failed(field: "email", message: "the phone belongs to a subscriber with another email (\(other))")
        } else if let phone = new.phone, let other = one.phone, phone != other {
          outcomes[index] = .failed(field: "phone", message: "the email belongs to a subscriber with another phone")
        } else {
          members.append(one.id)
          if options.updateExisting { updating.append((index, one)) } else { outcomes[index] = .existing }
        }
      case (let first?, let second?):
        if first.id == second.id {
          members.append(first.id)
          if options.updateExisting { updating.append((index, first)) } else { outcomes[index] = .existing }
        } else {
          outcomes[index] = .failed(field: "email", message: "the email and the phone belong to two different subscribers")
        }
      }
    }

    if !creating.isEmpty {
      let new = creating.map { rows[$0].subscriber }
      // Arrays cannot hold NULL here: '' stands for none (never a valid address or source).
      let inserted = try await connection.query(
        """
        WITH inserted AS (
          INSERT INTO campaign.subscribers (
            email, phone, first_name, last_name, attributes,
            email_subscribed, email_consent_source, email_consented_at, sms_subscribed, sms_consent_source, sms_consented_at)
          SELECT nullif(r.email, ''), nullif(r.phone, ''), r.first_name, r.last_name, r.attributes::jsonb,
            r.email_source <> '', nullif(r.email_source, ''), CASE WHEN r.email_source <> '' THEN now() END,
            r.sms_source <> '', nullif(r.sms_source, ''), CASE WHEN r.sms_source <> '' THEN now() END
          FROM unnest(
            \(new.map { $0.email ?? "" })::text[], \(new.map { $0.phone ?? "" })::text[], \(new.map(\.firstName))::text[],
            \(new.map(\.lastName))::text[], \(new.map(\.attributesJSON))::text[], \(new.map { $0.emailConsentSource ?? "" })::text[],
            \(new.map { $0.smsConsentSource ?? "" })::text[]
          ) WITH ORDINALITY AS r(email, phone, first_name, last_name, attributes, email_source, sms_source, n)
          ORDER BY r.n
          ON CONFLICT DO NOTHING
          RETURNING id, email, phone, email_consent_source, sms_consent_source
        ), consent AS (
          INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at)
          SELECT id, channel, true, source, now() FROM inserted,
            LATERAL (VALUES ('email', email_consent_source), ('sms', sms_consent_source)) AS c(channel, source)
          WHERE source IS NOT NULL
        )
        SELECT id, coalesce(email, ''), coalesce(phone, '') FROM inserted
        """, logger: logger
      ).collect().map { try $0.decode((UUID, String, String).self) }
      var created: [String: UUID] = [:]
      for (id, email, phone) in inserted { created[email.isEmpty ? "phone:" + phone : "email:" + email] = id }
      for index in creating {
        let new = rows[index].subscriber
        // Not inserted: another import wrote the same address a moment ago; reported as existing.
        guard let id = created[new.email.map { "email:" + $0 } ?? "phone:" + (new.phone ?? "")] else {
          outcomes[index] = .existing
          continue
        }
        members.append(id)
        outcomes[index] = .created
      }
    }

    if !updating.isEmpty {
      let new = updating.map { rows[$0.index].subscriber }
      try await connection.query(
        """
        UPDATE campaign.subscribers s SET
          email = coalesce(s.email, nullif(u.email, '')), phone = coalesce(s.phone, nullif(u.phone, '')),
          first_name = CASE WHEN u.first_name <> '' THEN u.first_name ELSE s.first_name END,
          last_name = CASE WHEN u.last_name <> '' THEN u.last_name ELSE s.last_name END,
          attributes = s.attributes || u.attributes::jsonb, updated_at = now()
        FROM unnest(
          \(updating.map(\.existing.id))::uuid[], \(new.map { $0.email ?? "" })::text[], \(new.map { $0.phone ?? "" })::text[],
          \(new.map(\.firstName))::text[], \(new.map(\.lastName))::text[], \(new.map(\.attributesJSON))::text[]
        ) AS u(id, email, phone, first_name, last_name, attributes)
        WHERE s.id = u.id
        """, logger: logger)
      // Consent is added only where it was never withdrawn: an import cannot undo an unsubscribe.
      for channel in ["email", "sms"] {
        var ids: [UUID] = []
        var sources: [String] = []
        for (index, existing) in updating {
          let new = rows[index].subscriber
          let consent = channel == "email" ? existing.emailConsent : existing.smsConsent
          guard let source = channel == "email" ? new.emailConsentSource : new.smsConsentSource,
            !consent.subscribed, consent.unsubscribedAt == nil
          else { continue }
          ids.append(existing.id)
          sources.append(source)
        }
        guard !ids.isEmpty else { continue }
        try await connection.query(
          """
          WITH granted AS (
            UPDATE campaign.subscribers s SET \(unescaped: channel)_subscribed = true,
              \(unescaped: channel)_consent_source = g.source, \(unescaped: channel)_consented_at = now()
            FROM unnest(\(ids)::uuid[], \(sources)::text[]) AS g(id, source)
            WHERE s.id = g.id AND s.\(unescaped: channel == "email" ? "email" : "phone") IS NOT NULL
            RETURNING s.id, g.source
          )
          INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at)
          SELECT id, \(channel), true, source, now() FROM granted
          """, logger: logger)
      }
      for (index, _) in updating { outcomes[index] = .updated }
    }

    if let list = options.listID, !members.isEmpty {
      try await connection.query(
        """
        INSERT INTO campaign.list_members (list_id, subscriber_id)
        SELECT \(list), id FROM unnest(\(members)::uuid[]) AS m(id) ON CONFLICT DO NOTHING
        """, logger: logger)
    }
    return outcomes.map { $0! }
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
