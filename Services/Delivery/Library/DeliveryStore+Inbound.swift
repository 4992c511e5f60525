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
  /// reply, stop, start, help, review, auto_reply or none (reply and none are settled by the
  /// store: reply when it answers a message of Herald's).
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
  ///   is a `replied` event of it, a STOP or an unsubscribe by mail an `unsubscribed` one;
  /// - stop: the number goes on the suppression list (reason sms_keyword) and what is queued or
  ///   held for it becomes `suppressed`; the confirmation is queued unless the number had already
  ///   opted out by keyword;
  /// - start: an opt-out by keyword is taken off, and the confirmation queued;
  /// - help: the help text queued.
  package func ingestInbound(
    _ payload: InboundPayload, provider: String, decision: InboundDecision
  ) async throws -> (record: InboundRecord, duplicate: Bool) {
    let headers = String(decoding: try JSONEncoder().encode(payload.headers), as: UTF8.self)
    return try await transaction { connection in
      let answered: (id: UUID, campaign: UUID?, subscriber: UUID?)?
      if payload.channel == "email" {
        let rows = try await connection.query(
          """
          SELECT id, campaign_id, subscriber_id FROM delivery.messages
          WHERE id = ANY(\(decision.answering.map { [$0] } ?? payload.references)::uuid[]) AND channel = 'email'
          ORDER BY id DESC LIMIT 1
          """, logger: logger)
        answered = try await rows.decode((UUID, UUID?, UUID?).self).elements().first.map { (id: $0.0, campaign: $0.1, subscriber: $0.2) }
      } else {
        // Through messages_sms_recipient_idx: the newest first.
        let rows = try await connection.query(
          """
          SELECT id, campaign_id, subscriber_id FROM delivery.messages
          WHERE channel = 'sms' AND recipient = \(payload.from) AND status IN ('sent', 'delivered', 'unknown') AND NOT compliance
          ORDER BY id DESC LIMIT 1
          """, logger: logger)
        answered = try await rows.decode((UUID, UUID?, UUID?).self).elements().first.map { (id: $0.0, campaign: $0.1, subscriber: $0.2) }
      }
      var action = decision.action
      if action == "none", answered != nil { action = "reply" }
      let inserted = try await connection.query(
        """
        INSERT INTO delivery.inbound_messages (
          provider, provider_message_id, channel, sender, recipient, subject, body, headers, answers_message_id, campaign_id,
          subscriber_id, action, keyword)
        VALUES (
          \(provider), \(payload.providerMessageID), \(payload.channel), \(payload.from), \(payload.to), \(payload.subject),
          \(payload.text), \(payload.channel == "email" ? headers : nil)::jsonb, \(answered?.id), \(answered?.campaign),
          \(answered?.subscriber), \(action), \(decision.keyword))
        ON CONFLICT (provider, provider_message_id) DO NOTHING
        RETURNING \(unescaped: Self.inboundColumns)
        """, logger: logger
      ).collect()
      guard let row = inserted.first else {
        let existing = try await connection.query(
          """
          SELECT \(unescaped: Self.inboundColumns) FROM delivery.inbound_messages
          WHERE provider = \(provider) AND provider_message_id = \(payload.providerMessageID)
          """, logger: logger
        ).collect()
        guard let row = existing.first else { throw PostgresError.protocol("an inbound message conflicted but is not stored") }
        return (try Self.inboundRecord(row), true)
      }
      var record = try Self.inboundRecord(row)
      switch action {
      case "reply":
        if let answered {
          try await event(
            answered.id, "replied", detail: Self.excerpt(payload.subject.isEmpty ? payload.text : payload.subject), on: connection)
        }
      case "stop":
        let confirm = try await optOut(record, on: connection)
        if let answered { try await event(answered.id, "unsubscribed", detail: "texted \(record.keyword)", on: connection) }
        if confirm, let text = decision.response { record.response = try await respond(to: record, text, on: connection) }
      case "unsubscribe":
        if let answered { try await event(answered.id, "unsubscribed", detail: "mailed its List-Unsubscribe address", on: connection) }
      case "start":
        try await connection.query(
          "DELETE FROM delivery.suppressions WHERE address = \(record.sender.lowercased()) AND reason = 'sms_keyword'",
          logger: logger)
        if let text = decision.response { record.response = try await respond(to: record, text, on: connection) }
      case "help":
        if let text = decision.response { record.response = try await respond(to: record, text, on: connection) }
      default: break
      }
      return (record, false)
    }
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
  /// suppresses what is queued or held for it; whether to confirm: not when it had opted out by
  /// keyword already.
  func optOut(_ record: InboundRecord, on connection: PostgresConnection) async throws -> Bool {
    let address = record.sender.lowercased()
    let reasons = try await connection.query(
      "SELECT reason FROM delivery.suppressions WHERE address = \(address) FOR UPDATE", logger: logger)
    let existing = try await reasons.decode(String.self).elements().first
    if existing == nil {
      try await connection.query(
        """
        INSERT INTO delivery.suppressions (address, reason, detail)
        VALUES (\(address), 'sms_keyword', \("texted \(record.keyword) to \(record.recipient)"))
        ON CONFLICT (address) DO NOTHING
        """, logger: logger)
    }
    // What waits for the number stops now, not at its claim.
    try await connection.query(
      """
      WITH stopped AS (
        UPDATE delivery.messages SET status = 'suppressed', last_error = \("the recipient texted \(record.keyword)"),
          updated_at = now()
        WHERE channel = 'sms' AND recipient = \(record.sender) AND status IN ('queued', 'held') AND NOT compliance
        RETURNING id, last_error
      )
      INSERT INTO delivery.delivery_events (message_id, status, detail) SELECT id, 'suppressed', last_error FROM stopped
      """, logger: logger)
    return existing != "sms_keyword"
  }

  /// Queues `text` to the sender, once per inbound message (its idempotency key), as a
  /// compliance message: sent even though the number is suppressed. Its id.
  func respond(to record: InboundRecord, _ text: String, on connection: PostgresConnection) async throws -> UUID? {
    let key = "inbound:\(record.id.lowercasedString):response"
    let rows = try await connection.query(
      """
      WITH queued AS (
        INSERT INTO delivery.messages (idempotency_key, channel, recipient, body, subscriber_id, compliance)
        VALUES (\(key), 'sms', \(record.sender), \(text), \(record.subscriberID), true)
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
  /// unless the number had opted out by keyword already) and moves the message to the end of the
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
        }
        if let answered = record.answers {
          try await event(answered, "unsubscribed", detail: "asked to stop (reviewed)", on: connection)
        }
      } else {
        record.action = "dismissed"
        try await connection.query("UPDATE delivery.inbound_messages SET action = 'dismissed' WHERE id = \(id)", logger: logger)
      }
      return .decided(record)
    }
  }

  /// Inbound messages after `cursor` in commit-safe order (see `events(after:limit:)`).
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
    for try await row in rows {
      messages.append(try Self.inboundRecord(row))
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
}
