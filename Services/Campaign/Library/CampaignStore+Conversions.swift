import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A checked conversion to record: exactly one of `subscriberID`, `email` and `phone` names who
/// converted (SPEC §13).
package struct NewConversion: Sendable, Equatable {
  package var subscriberID: UUID?
  package var email: String?
  package var phone: String?
  package var valueCents: Int64
  package var currency: String
  /// nil: when it is recorded.
  package var occurredAt: Date?
  package var idempotencyKey: String
  package var campaignID: UUID?

  package init(
    subscriberID: UUID? = nil, email: String? = nil, phone: String? = nil, valueCents: Int64, currency: String,
    occurredAt: Date?, idempotencyKey: String, campaignID: UUID? = nil
  ) {
    self.subscriberID = subscriberID
    self.email = email
    self.phone = phone
    self.valueCents = valueCents
    self.currency = currency
    self.occurredAt = occurredAt
    self.idempotencyKey = idempotencyKey
    self.campaignID = campaignID
  }
}

/// Who a conversion or an event is about: exactly one of an id, an e-mail and a phone.
package struct SubscriberReference: Sendable, Equatable {
  package var id: UUID?
  package var email: String?
  package var phone: String?

  package init(id: UUID? = nil, email: String? = nil, phone: String? = nil) {
    self.id = id
    self.email = email
    self.phone = phone
  }
}

/// A conversion as stored, with the rule that credited it.
package struct ConversionRecord: Sendable, Equatable {
  package var id: UUID
  package var idempotencyKey: String
  package var subscriberID: UUID
  package var campaignID: UUID?
  package var variant: String?
  /// given, last_click, last_open, last_delivery or none.
  package var attribution: String
  package var touchedAt: Date?
  package var valueCents: Int64
  package var currency: String
  package var occurredAt: Date
  package var receivedAt: Date
  /// Recorded by an earlier call with the same key.
  package var duplicate = false
}

/// Conversions (SPEC §13): who converted, the campaign credited by the attribution rules, and the
/// conversion's count and value in the campaign's daily rollup (status `converted`), all in one
/// transaction per batch. The idempotency key is unique: a retry is answered with what was
/// recorded and counted once.
extension CampaignStore {
  /// Records a batch (all or none); a malformed or unknown reference is refused naming
  /// `conversions[i].field`. `window` is the attribution window in seconds.
  package func recordConversions(_ inputs: [NewConversion], windowSeconds window: Int64) async throws -> [ConversionRecord] {
    let now = Date()
    let occurred = inputs.map { $0.occurredAt ?? now }
    return try await transaction { connection in
      let subscribers = try await resolveSubscribers(
        inputs.map { SubscriberReference(id: $0.subscriberID, email: $0.email, phone: $0.phone) }, collection: "conversions",
        on: connection)
      // Campaigns named by the caller must exist.
      let named = Array(Set(inputs.compactMap(\.campaignID)))
      if !named.isEmpty {
        let known = Set(
          try await connection.query("SELECT id FROM campaign.campaigns WHERE id = ANY(\(named)::uuid[])", logger: logger)
            .decode(UUID.self).elements())
        if let index = inputs.firstIndex(where: { $0.campaignID.map { !known.contains($0) } ?? false }) {
          throw RPCError.field(
            "conversions[\(index)].campaign_id", .notFound,
            "no campaign has the id \(inputs[index].campaignID!.lowercasedString)")
        }
      }
      // The credit of each: the campaign given (its variant the subscriber's outbox entry's), else
      // the last click, else the last open, else the last delivery within the window before it.
      var credits: [(campaign: UUID?, variant: String?, rule: String, touchedAt: Date?)] = Array(
        repeating: (nil, nil, "none", nil), count: inputs.count)
      let rows = try await connection.query(
        """
        SELECT i.n::int8, g.variant, g.touched_at, a.campaign_id, a.variant, a.rule, a.at
        FROM (
          SELECT u.subscriber_id, nullif(u.campaign_id, '')::uuid AS campaign_id, u.occurred_at, u.n
          FROM unnest(\(subscribers)::uuid[], \(Self.texts(inputs.map(\.campaignID)))::text[], \(occurred)::timestamptz[])
            WITH ORDINALITY AS u(subscriber_id, campaign_id, occurred_at, n)
        ) i
        LEFT JOIN LATERAL (
          SELECT o.variant, greatest(t.clicked_at, t.opened_at, t.delivered_at) AS touched_at FROM campaign.outbox o
          LEFT JOIN campaign.campaign_touches t ON t.subscriber_id = o.subscriber_id AND t.campaign_id = o.campaign_id
          WHERE o.campaign_id = i.campaign_id AND o.subscriber_id = i.subscriber_id
        ) g ON i.campaign_id IS NOT NULL
        LEFT JOIN LATERAL (
          SELECT * FROM (
            (SELECT t.campaign_id, t.variant, 'last_click' AS rule, t.clicked_at AS at, 1 AS rank FROM campaign.campaign_touches t
              WHERE t.subscriber_id = i.subscriber_id AND t.clicked_at BETWEEN i.occurred_at - make_interval(secs => \(window))
                AND i.occurred_at ORDER BY t.clicked_at DESC LIMIT 1)
            UNION ALL
            (SELECT t.campaign_id, t.variant, 'last_open', t.opened_at, 2 FROM campaign.campaign_touches t
              WHERE t.subscriber_id = i.subscriber_id AND t.opened_at BETWEEN i.occurred_at - make_interval(secs => \(window))
                AND i.occurred_at ORDER BY t.opened_at DESC LIMIT 1)
            UNION ALL
            (SELECT t.campaign_id, t.variant, 'last_delivery', t.delivered_at, 3 FROM campaign.campaign_touches t
              WHERE t.subscriber_id = i.subscriber_id AND t.delivered_at BETWEEN i.occurred_at - make_interval(secs => \(window))
                AND i.occurred_at AND (t.bounced_at IS NULL OR t.bounced_at < t.delivered_at)
              ORDER BY t.delivered_at DESC LIMIT 1)
          ) touches ORDER BY rank LIMIT 1
        ) a ON i.campaign_id IS NULL
        """, logger: logger)
      for try await (number, givenVariant, givenAt, campaign, variant, rule, at) in rows.decode(
        (Int64, String?, Date?, UUID?, String?, String?, Date?).self)
      {
        let index = Int(number) - 1
        if let given = inputs[index].campaignID {
          credits[index] = (given, givenVariant, "given", givenAt)
        } else if let campaign, let rule {
          credits[index] = (campaign, variant, rule, at)
        }
      }
      // Written once per key: what another call wrote first is answered as a duplicate.
      var inserted: [String: (id: UUID, receivedAt: Date)] = [:]
      for try await (key, id, receivedAt) in try await connection.query(
        """
        INSERT INTO campaign.conversions (
          idempotency_key, subscriber_id, campaign_id, variant, attribution, touched_at, value_cents, currency, occurred_at)
        SELECT u.key, u.subscriber_id, nullif(u.campaign_id, '')::uuid, nullif(u.variant, ''), u.rule,
          to_timestamp(nullif(u.touched_at, '')::float8), u.value_cents, u.currency, u.occurred_at
        FROM unnest(\(inputs.map(\.idempotencyKey))::text[], \(subscribers)::uuid[], \(Self.texts(credits.map(\.campaign)))::text[],
          \(Self.texts(credits.map(\.variant)))::text[], \(credits.map(\.rule))::text[], \(Self.texts(credits.map(\.touchedAt)))::text[],
          \(inputs.map(\.valueCents))::int8[], \(inputs.map(\.currency))::text[], \(occurred)::timestamptz[])
          AS u(key, subscriber_id, campaign_id, variant, rule, touched_at, value_cents, currency, occurred_at)
        ORDER BY u.key  -- batches sharing keys take them in one order: no deadlock
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING idempotency_key, id, received_at
        """, logger: logger
      ).decode((String, UUID, Date).self) {
        inserted[key] = (id, receivedAt)
      }
      var stored: [String: ConversionRecord] = [:]
      let known = Array(Set(inputs.map(\.idempotencyKey)).subtracting(inserted.keys))
      if !known.isEmpty {
        for record in try await conversions(keys: known, on: connection) { stored[record.idempotencyKey] = record }
      }
      var results: [ConversionRecord] = []
      var days: [DailyStatKey: DailyStatDelta] = [:]
      var firstOfKey: [String: Int] = [:]
      for (index, input) in inputs.enumerated() {
        let credit = credits[index]
        let fresh = ConversionRecord(
          id: inserted[input.idempotencyKey]?.id ?? UUID(), idempotencyKey: input.idempotencyKey, subscriberID: subscribers[index],
          campaignID: credit.campaign, variant: credit.variant, attribution: credit.rule, touchedAt: credit.touchedAt,
          valueCents: input.valueCents, currency: input.currency, occurredAt: occurred[index],
          receivedAt: inserted[input.idempotencyKey]?.receivedAt ?? now)
        let timeGiven = input.occurredAt != nil
        if let earlier = firstOfKey[input.idempotencyKey] {
          // The same key twice in one batch: one conversion.
          guard Self.sameConversion(results[earlier], fresh, timeGiven: timeGiven) else {
            throw Self.keyReused(index, input.idempotencyKey)
          }
          var again = results[earlier]
          again.duplicate = true
          results.append(again)
          continue
        }
        firstOfKey[input.idempotencyKey] = index
        if var previous = stored[input.idempotencyKey] {
          guard Self.sameConversion(previous, fresh, timeGiven: timeGiven) else { throw Self.keyReused(index, input.idempotencyKey) }
          previous.duplicate = true
          results.append(previous)
          continue
        }
        results.append(fresh)
        if let campaign = credit.campaign {
          let key = DailyStatKey(
            campaign: campaign, variant: credit.variant ?? "(unknown)", day: occurred[index].formatted(DeliveryFeedConsumer.dayFormat),
            status: "converted")
          days[key, default: DailyStatDelta()].events += 1
          days[key, default: DailyStatDelta()].valueCents += input.valueCents
        }
      }
      try await addDailyStats(days, on: connection)
      // Journeys triggered by (or waiting for, or exiting on) a conversion (SPEC §12).
      var seen: Set<String> = []
      let converted = results.filter { !$0.duplicate && seen.insert($0.idempotencyKey).inserted }.map { record in
        var properties: [String: JSONValue] = ["value_cents": .number(Double(record.valueCents))]
        properties["campaign_id"] = record.campaignID.map { .string($0.lowercasedString) }
        return (subscriber: record.subscriberID, properties: Self.properties(properties))
      }
      try await recordHeraldEvents(JourneyEvents.engagement("converted"), converted, on: connection)
      return results
    }
  }

  /// Each reference's subscriber id; refused naming `<collection>[i].<field>` when none (or an
  /// erased one) matches.
  func resolveSubscribers(
    _ inputs: [SubscriberReference], collection: String, on connection: PostgresConnection
  ) async throws -> [UUID] {
    var found: [Int: (UUID, String)] = [:]
    for try await (number, id, status) in try await connection.query(
      """
      SELECT i.n::int8, s.id, s.status
      FROM (
        SELECT nullif(u.id, '')::uuid AS id, nullif(u.email, '') AS email, nullif(u.phone, '') AS phone, u.n
        FROM unnest(\(Self.texts(inputs.map(\.id)))::text[], \(Self.texts(inputs.map { $0.email?.lowercased() }))::text[],
          \(Self.texts(inputs.map(\.phone)))::text[]) WITH ORDINALITY AS u(id, email, phone, n)
      ) i
      JOIN LATERAL (
        SELECT s.id, s.status FROM campaign.subscribers s WHERE s.id = i.id
        UNION ALL SELECT s.id, s.status FROM campaign.subscribers s WHERE s.email = i.email
        UNION ALL SELECT s.id, s.status FROM campaign.subscribers s WHERE s.phone = i.phone
        LIMIT 1
      ) s ON true
      """, logger: logger
    ).decode((Int64, UUID, String).self) {
      found[Int(number) - 1] = (id, status)
    }
    return try inputs.enumerated().map { index, input in
      let (field, value) =
        if let id = input.id {
          ("subscriber_id", id.lowercasedString)
        } else if let email = input.email {
          ("email", email)
        } else {
          ("phone", input.phone ?? "")
        }
      guard let (id, status) = found[index] else {
        throw RPCError.field(
          "\(collection)[\(index)].\(field)", .notFound, "no subscriber has the \(field.replacingOccurrences(of: "_", with: " ")) \(value)")
      }
      guard status != "erased" else {
        throw RPCError.field("\(collection)[\(index)].\(field)", .failedPrecondition, "subscriber \(id.lowercasedString) is erased")
      }
      return id
    }
  }

  /// Stored conversions by idempotency key.
  func conversions(keys: [String], on connection: PostgresConnection) async throws -> [ConversionRecord] {
    try await connection.query(
      """
      SELECT id, idempotency_key, subscriber_id, campaign_id, variant, attribution, touched_at, value_cents, currency, occurred_at,
        received_at
      FROM campaign.conversions WHERE idempotency_key = ANY(\(keys)::text[])
      """, logger: logger
    ).decode((UUID, String, UUID, UUID?, String?, String, Date?, Int64, String, Date, Date).self).elements().map {
      ConversionRecord(
        id: $0.0, idempotencyKey: $0.1, subscriberID: $0.2, campaignID: $0.3, variant: $0.4, attribution: $0.5, touchedAt: $0.6,
        valueCents: $0.7, currency: $0.8, occurredAt: $0.9, receivedAt: $0.10)
    }
  }

  /// The same conversion given again: who, what and when (to the millisecond; PostgreSQL keeps
  /// microseconds; a retry without its time takes the first one's), and the campaign when the
  /// caller named one.
  static func sameConversion(_ stored: ConversionRecord, _ given: ConversionRecord, timeGiven: Bool) -> Bool {
    stored.subscriberID == given.subscriberID && stored.valueCents == given.valueCents && stored.currency == given.currency
      && (!timeGiven || abs(stored.occurredAt.timeIntervalSince(given.occurredAt)) < 0.001)
      && (given.attribution != "given" || (stored.attribution == "given" && stored.campaignID == given.campaignID))
  }

  static func keyReused(_ index: Int, _ key: String) -> RPCError {
    RPCError.field(
      "conversions[\(index)].idempotency_key", .alreadyExists,
      "idempotency_key '\(key)' was recorded for another conversion (a different subscriber, value, currency, time or campaign)")
  }
}
