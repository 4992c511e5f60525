import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// An inbound message as stored in `delivery.inbound_messages`.
package struct InboundRecord: Sendable, Equatable {
  package var id: UUID
  package var provider: String
  package var providerMessageID: String
  package var channel: String
  package var sender: String
  package var recipient: String
  package var subject: String
  package var body: String
  package var answers: UUID?
  package var campaignID: UUID?
  package var subscriberID: UUID?
  package var action: String
  package var keyword: String
  package var response: UUID?
  package var receivedAt: Date
}

/// What an inbound message is taken as, decided before it is stored (see `SMSKeywords`).
package struct InboundDecision: Sendable {
  /// reply, stop, start, help, review, unsubscribe, auto_reply or none (reply and none are
  /// settled by the store: reply when it answers a message of Herald's).
  package var action: String
  package var keyword: String
  /// The text queued in answer (a confirmation, the help text), sent even to a suppressed number.
  package var response: String?
  /// The message answered, when the address it was sent to names it (`AddressToken`).
  package var answering: UUID?

  package init(action: String, keyword: String, response: String? = nil, answering: UUID? = nil) {
    self.action = action
    self.keyword = keyword
    self.response = response
    self.answering = answering
  }
}

/// Inbound messages (SPEC §11): stored once per provider message id, matched to the message they
/// answer, and their SMS keywords applied to the suppression list and the queue, all in one
/// transaction.
extension DeliveryStore {
  static let inboundColumns = """
    id, provider, provider_message_id, channel, sender, recipient, subject, body, answers_message_id, campaign_id,
    subscriber_id, action, keyword, response_message_id, received_at
    """

  static func inboundRecord(_ row: PostgresRow) throws -> InboundRecord {
    let cells = row.makeRandomAccess()
    func text(_ name: String) throws -> String { try cells[name].decode(String.self) }
    func id(_ name: String) throws -> UUID? { try cells[name].decode(UUID?.self) }
    return InboundRecord(
      id: try cells["id"].decode(UUID.self), provider: try text("provider"), providerMessageID: try text("provider_message_id"),
      channel: try text("channel"), sender: try text("sender"), recipient: try text("recipient"), subject: try text("subject"),
      body: try text("body"), answers: try id("answers_message_id"), campaignID: try id("campaign_id"),
      subscriberID: try id("subscriber_id"), action: try text("action"), keyword: try text("keyword"),
      response: try id("response_message_id"), receivedAt: try cells["received_at"].decode(Date.self))
  }

  /// Stores `payload` from `provider` unless that provider's message id is stored already
  /// (`duplicate`, and nothing is done again), and applies `decision`:
  /// - the message it answers: the one its address names (`decision.answering`), else an e-mail's
  ///   In-Reply-To/References naming one of Herald's, or the last SMS sent to the number; a reply
  ///   is a `replied` event of it, a new STOP or an unsubscribe by mail an `unsubscribed` one;
  /// - stop: the number goes on the suppression list (reason sms_keyword) and what is queued or
  ///   held for it becomes `suppressed`; the confirmation is queued when the number was not on
  ///   the list yet (two STOPs, even at once, confirm once);
  /// - start: an opt-out by keyword is taken off, and the confirmation queued; YES (which answers
  ///   many a question) is a keyword only for a number that had opted out by keyword, else a reply;
  /// - help: the help text queued.
  /// Messages without a keyword take one statement; keywords one transaction.
  package func ingestInbound(
    _ payload: InboundPayload, provider: String, decision: InboundDecision
  ) async throws -> (record: InboundRecord, duplicate: Bool) {
    let answered = try await answeredMessage(payload, answering: decision.answering)
    let action = decision.action == "none" && answered != nil ? "reply" : decision.action
    let headers = payload.channel == "email" ? String(decoding: try JSONEncoder().encode(payload.headers), as: UTF8.self) : nil
    let insert: PostgresQuery = """
      INSERT INTO delivery.inbound_messages (
        provider, provider_message_id, channel, sender, recipient, subject, body, headers, answers_message_id, campaign_id,
        subscriber_id, action, keyword)
      VALUES (
        \(provider), \(payload.providerMessageID), \(payload.channel), \(payload.from), \(payload.to), \(payload.subject),
        \(payload.text), \(headers)::jsonb, \(answered?.id), \(answered?.campaign), \(answered?.subscriber), \(action),
        \(decision.keyword))
      ON CONFLICT (provider, provider_message_id) DO NOTHING
      RETURNING \(unescaped: Self.inboundColumns)
      """
    guard ["stop", "start", "help"].contains(action) else {
      // The message and its event in one statement.
      let detail =
        action == "unsubscribe"
        ? "mailed its List-Unsubscribe address" : Self.excerpt(payload.subject.isEmpty ? payload.text : payload.subject)
      var query = insert
      query.sql =
        "WITH inserted AS (\(query.sql)), events AS (" + """
          INSERT INTO delivery.delivery_events (message_id, status, detail)
          SELECT answers_message_id, CASE action WHEN 'reply' THEN 'replied' ELSE 'unsubscribed' END, $\(query.binds.count + 1)
          FROM inserted WHERE answers_message_id IS NOT NULL AND action IN ('reply', 'unsubscribe')
          ) SELECT * FROM inserted
          """
      query.binds.append(detail)
      if let row = try await client.query(query, logger: logger).collect().first { return (try Self.inboundRecord(row), false) }
      return (try await existingInbound(provider: provider, id: payload.providerMessageID), true)
    }
    return try await transaction { connection in
      guard let row = try await connection.query(insert, logger: logger).collect().first else {
        return (try await existingInbound(provider: provider, id: payload.providerMessageID), true)
      }
      var record = try Self.inboundRecord(row)
      switch action {
      case "stop":
        if try await optOut(record, on: connection) {
          if let answered { try await event(answered.id, "unsubscribed", detail: "texted \(record.keyword)", on: connection) }
          if let text = decision.response { record.response = try await respond(to: record, text, on: connection) }
        }
      case "start":
        let removed = try await !connection.query(
          """
          DELETE FROM delivery.suppressions
          WHERE address = delivery.suppression_key(\(record.channel), \(record.sender)) AND reason = 'sms_keyword' RETURNING 1
          """, logger: logger
        ).collect().isEmpty
        if !removed, record.keyword == "YES" {
          record.action = answered == nil ? "none" : "reply"
          try await connection.query(
            "UPDATE delivery.inbound_messages SET action = \(record.action), keyword = '' WHERE id = \(record.id)", logger: logger)
          record.keyword = ""
          if let answered {
            try await event(answered.id, "replied", detail: Self.excerpt(payload.text), on: connection)
          }
        } else if let text = decision.response {
          record.response = try await respond(to: record, text, on: connection)
        }
      default:
        if let text = decision.response { record.response = try await respond(to: record, text, on: connection) }
      }
      return (record, false)
    }
  }

  /// The message of Herald's an inbound message answers: the one its address names, else an
  /// e-mail's In-Reply-To/References, else for an SMS the last text sent to the number (through
  /// messages_sms_recipient_idx).
  func answeredMessage(_ payload: InboundPayload, answering: UUID?) async throws -> (id: UUID, campaign: UUID?, subscriber: UUID?)? {
    let rows: PostgresRowSequence
    if payload.channel == "email" {
      let candidates = answering.map { [$0] } ?? payload.references
      guard !candidates.isEmpty else { return nil }
      rows = try await client.query(
        """
        SELECT id, campaign_id, subscriber_id FROM delivery.messages
        WHERE id = ANY(\(candidates)::uuid[]) AND channel = 'email' ORDER BY created_at DESC LIMIT 1
        """, logger: logger)
    } else {
      // The channel as a literal, so that the partial index of its recipients serves.
      rows = try await client.query(
        """
        SELECT id, campaign_id, subscriber_id FROM delivery.messages
        WHERE channel = \(unescaped: Self.textChannelLiteral(payload.channel)) AND recipient = \(payload.from)
          AND status IN ('sent', 'delivered', 'unknown') AND NOT compliance
        ORDER BY created_at DESC LIMIT 1
        """, logger: logger)
    }
    return try await rows.decode((UUID, UUID?, UUID?).self).elements().first.map { (id: $0.0, campaign: $0.1, subscriber: $0.2) }
  }

  /// 'whatsapp' or 'sms' as an SQL literal: the number's channel (the partial indexes of their
  /// recipients match only a literal).
  static func textChannelLiteral(_ channel: String) -> String {
    channel == "whatsapp" ? "'whatsapp'" : "'sms'"
  }

  /// The message a provider's retry names (stored by an earlier call, committed by now).
  func existingInbound(provider: String, id: String) async throws -> InboundRecord {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.inboundColumns) FROM delivery.inbound_messages
      WHERE provider = \(provider) AND provider_message_id = \(id)
      """, logger: logger
    ).collect()
    guard let row = rows.first else { throw PostgresError.protocol("an inbound message conflicted but is not stored") }
    return try Self.inboundRecord(row)
  }

  /// At most 200 characters of an inbound message, on one line, for an event's detail.
  static func excerpt(_ text: String) -> String {
    let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
    return line.count > 200 ? String(line.prefix(199)) + "…" : line
  }

  func event(_ message: UUID, _ status: String, detail: String, on connection: PostgresConnection) async throws {
    try await connection.query(
      "INSERT INTO delivery.delivery_events (message_id, status, detail) VALUES (\(message), \(status), \(detail))",
      logger: logger)
  }

  /// Puts the number on the suppression list (keeping another reason it is there for) and
  /// suppresses what is queued or held for it; whether the number was not on the list before
  /// (only then is it confirmed: an insert that meets a concurrent one waits for it and inserts
  /// nothing).
  func optOut(_ record: InboundRecord, on connection: PostgresConnection) async throws -> Bool {
    let added = try await !connection.query(
      """
      INSERT INTO delivery.suppressions (address, reason, detail)
      VALUES (
        delivery.suppression_key(\(record.channel), \(record.sender)), 'sms_keyword',
        \("\(record.channel == "whatsapp" ? "wrote" : "texted") \(record.keyword) to \(record.recipient)\(record.channel == "whatsapp" ? " on WhatsApp" : "")"))
      ON CONFLICT (address) DO NOTHING
      RETURNING 1
      """, logger: logger
    ).collect().isEmpty
    // What waits for the number stops now, not at its claim.
    try await connection.query(
      """
      WITH stopped AS (
        UPDATE delivery.messages SET status = 'suppressed',
          last_error = \("the recipient \(record.channel == "whatsapp" ? "wrote" : "texted") \(record.keyword)\(record.channel == "whatsapp" ? " on WhatsApp" : "")"),
          updated_at = now()
        WHERE channel = \(unescaped: Self.textChannelLiteral(record.channel)) AND recipient = \(record.sender)
          AND status IN ('queued', 'held') AND NOT compliance
        RETURNING id, last_error
      )
      INSERT INTO delivery.delivery_events (message_id, status, detail) SELECT id, 'suppressed', last_error FROM stopped
      """, logger: logger)
    return added
  }

  /// Queues `text` to the sender, once per inbound message (its idempotency key), as a
  /// compliance message: sent even though the number is suppressed. Its id.
  func respond(to record: InboundRecord, _ text: String, on connection: PostgresConnection) async throws -> UUID? {
    let key = "inbound:\(record.id.lowercasedString):response"
    let rows = try await connection.query(
      """
      WITH queued AS (
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, subscriber_id, compliance)
        VALUES (\(key), \(unescaped: Self.textChannelLiteral(record.channel)), \(record.sender), \(text), \(record.subscriberID), true)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
      ), events AS (
        INSERT INTO delivery.delivery_events (message_id, status, detail) SELECT id, 'queued', \("in answer to \(record.keyword)") FROM queued
      ), linked AS (
        UPDATE delivery.inbound_messages SET response_message_id = (SELECT id FROM queued) WHERE id = \(record.id)
      )
      SELECT id FROM queued
      """, logger: logger)
    return try await rows.decode(UUID.self).elements().first
  }

  package func inboundMessage(id: UUID) async throws -> InboundRecord? {
    try await client.query(
      "SELECT \(unescaped: Self.inboundColumns) FROM delivery.inbound_messages WHERE id = \(id)", logger: logger
    ).collect().first.map(Self.inboundRecord)
  }

  /// Newest first, before `cursor`, optionally only those taken as `action`.
  package func inboundMessages(action: String?, before cursor: UUID?, limit: Int) async throws -> [InboundRecord] {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.inboundColumns) FROM delivery.inbound_messages
      WHERE (\(action)::text IS NULL OR action = \(action)) AND (\(cursor)::uuid IS NULL OR id < \(cursor))
      ORDER BY id DESC LIMIT \(limit)
      """, logger: logger)
    return try await rows.collect().map(Self.inboundRecord)
  }

  package enum ReviewOutcome: Sendable {
    case decided(InboundRecord)
    case notFound
    case notWaiting(action: String)
  }

  /// Decides a message waiting for review: stop applies the opt-out (and queues `confirmation`
  /// when the number was not on the suppression list yet) and moves the message to the end of the
  /// inbound feed, so the campaign service withdraws the consent; dismiss only records the decision.
  package func reviewInbound(id: UUID, stop: Bool, confirmation: @escaping @Sendable (InboundRecord) -> String) async throws
    -> ReviewOutcome
  {
    try await transaction { connection in
      let rows = try await connection.query(
        "SELECT \(unescaped: Self.inboundColumns) FROM delivery.inbound_messages WHERE id = \(id) FOR UPDATE", logger: logger
      ).collect()
      guard let row = rows.first else { return .notFound }
      var record = try Self.inboundRecord(row)
      guard record.action == "review" else { return .notWaiting(action: record.action) }
      if stop {
        record.action = "stop_reviewed"
        try await connection.query(
          """
          UPDATE delivery.inbound_messages SET action = 'stop_reviewed', txid = pg_current_xact_id(), feed_seq = DEFAULT
          WHERE id = \(id)
          """, logger: logger)
        if try await optOut(record, on: connection) {
          record.response = try await respond(to: record, confirmation(record), on: connection)
          if let answered = record.answers {
            try await event(answered, "unsubscribed", detail: "asked to stop (reviewed)", on: connection)
          }
        }
      } else {
        record.action = "dismissed"
        try await connection.query("UPDATE delivery.inbound_messages SET action = 'dismissed' WHERE id = \(id)", logger: logger)
      }
      return .decided(record)
    }
  }

  /// What one page of the inbound feed holds at most (texts and subjects), so that an answer stays
  /// well within gRPC's 4 MiB whatever the messages: a page always holds one message at least.
  static let feedPageBytes = 1 << 20

  /// Inbound messages after `cursor` in commit-safe order (see `events(after:limit:)`), up to
  /// `limit` of them and `feedPageBytes` of text.
  package func inboundFeed(after cursor: FeedCursor, limit: Int) async throws -> (messages: [InboundRecord], next: FeedCursor) {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.inboundColumns), txid::text AS txid_text, feed_seq FROM delivery.inbound_messages
      WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
        AND (txid, feed_seq) > (\(String(cursor.transaction))::text::xid8, \(cursor.event))
      ORDER BY txid, feed_seq
      LIMIT \(limit)
      """, logger: logger)
    var messages: [InboundRecord] = []
    var next = cursor
    var bytes = 0
    for try await row in rows {
      let record = try Self.inboundRecord(row)
      bytes += record.body.utf8.count + record.subject.utf8.count
      // The rest of the rows are read and dropped: the next page starts after the last one kept.
      if bytes > Self.feedPageBytes, !messages.isEmpty { continue }
      messages.append(record)
      let cells = row.makeRandomAccess()
      next = FeedCursor(
        transaction: UInt64(try cells["txid_text"].decode(String.self)) ?? cursor.transaction,
        event: try cells["feed_seq"].decode(Int64.self))
    }
    return (messages, next)
  }

  /// Sets the subscriber of inbound messages that have none; how many it set.
  package func linkInbound(_ links: [(inbound: UUID, subscriber: UUID)]) async throws -> Int {
    guard !links.isEmpty else { return 0 }
    let rows = try await client.query(
      """
      UPDATE delivery.inbound_messages i SET subscriber_id = t.subscriber
      FROM unnest(\(links.map(\.inbound))::uuid[], \(links.map(\.subscriber))::uuid[]) AS t(inbound, subscriber)
      WHERE i.id = t.inbound AND i.subscriber_id IS NULL
      RETURNING i.id
      """, logger: logger)
    return try await rows.collect().count
  }

  /// The last time each number wrote to a WhatsApp number of Herald's (the customer-service
  /// window's start); numbers that never did are left out.
  package func lastWhatsAppInbound(from numbers: [String]) async throws -> [String: Date] {
    var last: [String: Date] = [:]
    let rows = try await client.query(
      """
      SELECT n.sender, (SELECT max(received_at) FROM delivery.inbound_messages i WHERE i.channel = 'whatsapp' AND i.sender = n.sender)
      FROM unnest(\(numbers)::text[]) AS n(sender)
      """, logger: logger)
    for try await (number, at) in rows.decode((String, Date?).self) {
      if let at { last[number] = at }
    }
    return last
  }

  /// Which of `ids` name a message `provider` sent (its provider message id is recorded).
  package func knownProviderMessageIDs(_ ids: [String], provider: String) async throws -> Set<String> {
    Set(
      try await client.query(
        """
        SELECT provider_message_id FROM delivery.messages
        WHERE provider = \(provider) AND provider_message_id = ANY(\(ids)::text[])
        """, logger: logger
      ).decode(String.self).elements())
  }
}
