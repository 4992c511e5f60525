import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// The bulk import's writes (SPEC §2): a chunk of checked rows in one transaction. Consent from
/// an import never overrides an earlier unsubscribe.
extension CampaignStore {
  /// Writes the rows in one transaction, each matched to an existing subscriber by its e-mail or
  /// phone; returns each row's outcome in order. A database error fails the whole chunk.
  ///
  /// Set-based, in runs of rows that touch different subscribers: per run, one statement locks
  /// the matches, one inserts the new subscribers with their consent events, one updates the
  /// existing ones, one per channel adds consent, one adds list memberships. A run ends before a
  /// row that repeats an earlier row's e-mail or phone, or matches the subscriber an earlier row
  /// matched (the same person twice in a file, rare): that row begins the next run, so it sees
  /// what the rows before it wrote, and the outcome is that of writing the rows one by one.
  func importRows(_ rows: [SubscriberImporter.Row], options: SubscriberImporter.Options) async throws -> [SubscriberImporter.Outcome] {
    try await transaction { connection in
      var outcomes: [SubscriberImporter.Outcome] = []
      var rest = rows[...]
      while !rest.isEmpty {
        var emails = Set<String>()
        var phones = Set<String>()
        let run = rest.prefix { row in
          let (email, phone) = (row.subscriber.email, row.subscriber.phone)
          if email.map(emails.contains) ?? false || phone.map(phones.contains) ?? false { return false }
          if let email { emails.insert(email) }
          if let phone { phones.insert(phone) }
          return true
        }
        let written = try await importRun(Array(run), options: options, on: connection)
        outcomes += written
        rest = rest.dropFirst(written.count)
      }
      return outcomes
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

  /// Writes rows whose e-mails and phones all differ from each other's, up to the first that
  /// matches a subscriber an earlier one matched; returns the outcomes of those it wrote (at
  /// least the first row).
  private func importRun(
    _ run: [SubscriberImporter.Row], options: SubscriberImporter.Options, on connection: PostgresConnection
  ) async throws -> [SubscriberImporter.Outcome] {
    guard !run.isEmpty else { return [] }
    let emails = run.compactMap(\.subscriber.email)
    let phones = run.compactMap(\.subscriber.phone)
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
    // Two rows matching one subscriber (one by its e-mail, the other by its phone) must be
    // written one after the other: the run ends before the second.
    var matched = Set<UUID>()
    let rows = run.prefix { row in
      let ids = [row.subscriber.email.flatMap { byEmail[$0]?.id }, row.subscriber.phone.flatMap { byPhone[$0]?.id }].compactMap { $0 }
      guard matched.isDisjoint(with: ids) else { return false }
      matched.formUnion(ids)
      return true
    }

    var outcomes = [SubscriberImporter.Outcome?](repeating: nil, count: rows.count)
    var creating: [Int] = []
    var updating: [(index: Int, existing: SubscriberRecord)] = []
    var members: [UUID] = []
    // A WhatsApp number is one subscriber's: a row giving one that another subscriber (or an
    // earlier row of this run) has fails, naming it.
    let numbers = rows.compactMap(\.subscriber.whatsapp)
    var whatsAppHolders: [String: UUID] = [:]
    if !numbers.isEmpty {
      for try await (id, number) in try await connection.query(
        "SELECT id, whatsapp FROM campaign.subscribers WHERE whatsapp = ANY(\(numbers)::text[])", logger: logger
      ).decode((UUID, String).self) {
        whatsAppHolders[number] = id
      }
    }
    var claimedNumbers = Set<String>()
    // Devices' push tokens of the rows created or updated, registered once those are written.
    var tokens: [(subscriber: UUID, token: NewPushToken)] = []
    for (index, row) in rows.enumerated() {
      let new = row.subscriber
      let byItsEmail = new.email.flatMap { byEmail[$0] }
      let byItsPhone = new.phone.flatMap { byPhone[$0] }
      if let number = new.whatsapp {
        let owner = byItsEmail ?? byItsPhone
        let holder = whatsAppHolders[number]
        guard holder == nil || holder == owner?.id, claimedNumbers.insert(number).inserted else {
          outcomes[index] = .failed(field: "whatsapp", message: "another subscriber already has this whatsapp number")
          continue
        }
        // As for e-mail and phone: a row does not change a subscriber's number (its consent
        // would be granted to the stored one).
        if let stored = owner?.whatsapp, stored != number {
          outcomes[index] = .failed(field: "whatsapp", message: "the subscriber has another whatsapp number")
          continue
        }
      }
      switch (byItsEmail, byItsPhone) {
      case (nil, nil):
        creating.append(index)
      case (let first?, let second?) where first.id != second.id:
        outcomes[index] = .failed(field: "email", message: "the email and the phone belong to two different subscribers")
      case (let one?, _), (nil, let one?):
        // Matched by one address, the other (if given) must not differ from the subscriber's.
        if let email = new.email, let other = one.email, email != other {
          outcomes[index] = .failed(field: "email", message: "the phone belongs to a subscriber with another email (\(other))")
        } else if let phone = new.phone, let other = one.phone, phone != other {
          outcomes[index] = .failed(field: "phone", message: "the email belongs to a subscriber with another phone")
        } else {
          members.append(one.id)
          if options.updateExisting { updating.append((index, one)) } else { outcomes[index] = .existing }
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
            email_subscribed, email_consent_source, email_consented_at, sms_subscribed, sms_consent_source, sms_consented_at,
            whatsapp, whatsapp_subscribed, whatsapp_consent_source, whatsapp_consented_at)
          SELECT nullif(r.email, ''), nullif(r.phone, ''), r.first_name, r.last_name, r.attributes::jsonb,
            r.email_source <> '', nullif(r.email_source, ''), CASE WHEN r.email_source <> '' THEN now() END,
            r.sms_source <> '', nullif(r.sms_source, ''), CASE WHEN r.sms_source <> '' THEN now() END,
            nullif(r.whatsapp, ''), r.whatsapp_source <> '', nullif(r.whatsapp_source, ''),
            CASE WHEN r.whatsapp_source <> '' THEN now() END
          FROM unnest(
            \(new.map { $0.email ?? "" })::text[], \(new.map { $0.phone ?? "" })::text[], \(new.map(\.firstName))::text[],
            \(new.map(\.lastName))::text[], \(new.map(\.attributesJSON))::text[], \(new.map { $0.emailConsentSource ?? "" })::text[],
            \(new.map { $0.smsConsentSource ?? "" })::text[], \(new.map { $0.whatsapp ?? "" })::text[],
            \(new.map { $0.whatsappConsentSource ?? "" })::text[]
          ) WITH ORDINALITY AS r(email, phone, first_name, last_name, attributes, email_source, sms_source, whatsapp, whatsapp_source, n)
          ORDER BY r.n
          ON CONFLICT DO NOTHING
          RETURNING id, email, phone, email_consent_source, sms_consent_source, whatsapp_consent_source
        ), consent AS (
          INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at)
          SELECT id, channel, true, source, now() FROM inserted,
            LATERAL (VALUES ('email', email_consent_source), ('sms', sms_consent_source), ('whatsapp', whatsapp_consent_source))
              AS c(channel, source)
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
        tokens += new.pushTokens.map { (id, $0) }
      }
    }

    if !updating.isEmpty {
      let new = updating.map { rows[$0.index].subscriber }
      try await connection.query(
        """
        UPDATE campaign.subscribers s SET
          email = coalesce(s.email, nullif(u.email, '')), phone = coalesce(s.phone, nullif(u.phone, '')),
          whatsapp = coalesce(s.whatsapp, nullif(u.whatsapp, '')),
          first_name = CASE WHEN u.first_name <> '' THEN u.first_name ELSE s.first_name END,
          last_name = CASE WHEN u.last_name <> '' THEN u.last_name ELSE s.last_name END,
          attributes = s.attributes || u.attributes::jsonb, updated_at = now()
        FROM unnest(
          \(updating.map(\.existing.id))::uuid[], \(new.map { $0.email ?? "" })::text[], \(new.map { $0.phone ?? "" })::text[],
          \(new.map(\.firstName))::text[], \(new.map(\.lastName))::text[], \(new.map(\.attributesJSON))::text[],
          \(new.map { $0.whatsapp ?? "" })::text[]
        ) AS u(id, email, phone, first_name, last_name, attributes, whatsapp)
        WHERE s.id = u.id
        """, logger: logger)
      // Consent is added only where it was never withdrawn: an import cannot undo an unsubscribe.
      for channel in ["email", "sms", "whatsapp"] {
        var ids: [UUID] = []
        var sources: [String] = []
        for (index, existing) in updating {
          let new = rows[index].subscriber
          let consent = existing[keyPath: SubscriberRecord.consent(channel)]
          let given =
            switch channel {
            case "email": new.emailConsentSource
            case "whatsapp": new.whatsappConsentSource
            default: new.smsConsentSource
            }
          guard let source = given, !consent.subscribed, consent.unsubscribedAt == nil
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
            WHERE s.id = g.id AND s.\(unescaped: CampaignService.contactField(channel)) IS NOT NULL
            RETURNING s.id, g.source
          )
          INSERT INTO campaign.consent_events (subscriber_id, channel, subscribed, source, occurred_at)
          SELECT id, \(channel), true, source, now() FROM granted
          """, logger: logger)
      }
      for (index, existing) in updating {
        outcomes[index] = .updated
        tokens += rows[index].subscriber.pushTokens.map { (existing.id, $0) }
      }
    }
    try await registerPushTokens(tokens, on: connection)

    if let list = options.listID, !members.isEmpty {
      let joined = try await connection.query(
        """
        INSERT INTO campaign.list_members (list_id, subscriber_id)
        SELECT \(list), id FROM unnest(\(members)::uuid[]) AS m(id) ON CONFLICT DO NOTHING RETURNING subscriber_id
        """, logger: logger
      ).decode(UUID.self).elements()
      // Journeys triggered by joining this list (SPEC §12).
      let properties = Self.properties(["list_id": .string(list.lowercasedString)])
      try await recordHeraldEvents(JourneyEvents.listJoined, joined.map { ($0, properties) }, on: connection)
    }
    return outcomes.map { $0! }
  }
}
