import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// A checked custom event to record (SPEC §12).
package struct NewEvent: Sendable, Equatable {
  package var subscriber: SubscriberReference
  package var name: String
  /// A JSON object.
  package var propertiesJSON: String
  /// nil: when it is recorded.
  package var occurredAt: Date?
  package var idempotencyKey: String

  package init(subscriber: SubscriberReference, name: String, propertiesJSON: String, occurredAt: Date?, idempotencyKey: String) {
    self.subscriber = subscriber
    self.name = name
    self.propertiesJSON = propertiesJSON
    self.occurredAt = occurredAt
    self.idempotencyKey = idempotencyKey
  }
}

package struct EventRecord: Sendable, Equatable {
  package var id: Int64
  package var idempotencyKey: String
  package var name: String
  package var subscriberID: UUID
  package var occurredAt: Date
  /// Recorded by an earlier call with the same key.
  package var duplicate = false
}

/// Events that journeys are triggered by, wait for and exit on: the custom ones callers record,
/// and Herald's own, written by the code that sees them happen (in its transaction) while some
/// journey listens.
extension CampaignStore {
  /// Records a batch (all or none); a retry of a key is answered with what was recorded.
  package func recordEvents(_ inputs: [NewEvent]) async throws -> [EventRecord] {
    let now = Date()
    let occurred = inputs.map { $0.occurredAt ?? now }
    return try await transaction { connection in
      let subscribers = try await resolveSubscribers(inputs.map(\.subscriber), collection: "events", on: connection)
      var inserted: [String: Int64] = [:]
      for try await (key, id) in try await connection.query(
        """
        INSERT INTO campaign.events (idempotency_key, name, subscriber_id, properties, occurred_at)
        SELECT u.key, u.name, u.subscriber_id, u.properties::jsonb, u.occurred_at
        FROM unnest(\(inputs.map(\.idempotencyKey))::text[], \(inputs.map(\.name))::text[], \(subscribers)::uuid[],
          \(inputs.map(\.propertiesJSON))::text[], \(occurred)::timestamptz[]) AS u(key, name, subscriber_id, properties, occurred_at)
        ORDER BY u.key
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING idempotency_key, id
        """, logger: logger
      ).decode((String, Int64).self) {
        inserted[key] = id
      }
      // What each item is checked against when it is not new: the row an earlier call recorded
      // (read for those keys only), or the first item of this batch with its key.
      typealias Recorded = (id: Int64, name: String, subscriber: UUID, properties: String, occurredAt: Date)
      var stored: [String: Recorded] = [:]
      let known = Array(Set(inputs.map(\.idempotencyKey)).subtracting(inserted.keys))
      if !known.isEmpty {
        for try await (key, id, name, subscriber, properties, occurredAt) in try await connection.query(
          """
          SELECT idempotency_key, id, name, subscriber_id, properties::text, occurred_at FROM campaign.events
          WHERE idempotency_key = ANY(\(known)::text[])
          """, logger: logger
        ).decode((String, Int64, String, UUID, String, Date).self) {
          stored[key] = (id, name, subscriber, properties, occurredAt)
        }
      }
      var records: [Recorded] = []
      var fresh: [Bool] = []
      for (index, input) in inputs.enumerated() {
        if let id = inserted[input.idempotencyKey], stored[input.idempotencyKey] == nil {
          stored[input.idempotencyKey] = (id, input.name, subscribers[index], input.propertiesJSON, occurred[index])
          fresh.append(true)
        } else {
          fresh.append(false)
        }
        guard let record = stored[input.idempotencyKey] else {
          throw PostgresError.protocol("event \(input.idempotencyKey) was not stored")
        }
        records.append(record)
      }
      // jsonb equality, as PostgreSQL compares them, for the items that are not new.
      let comparisons = inputs.indices.filter { !fresh[$0] }
      var sameProperties: Set<Int> = []
      if !comparisons.isEmpty {
        for try await index in try await connection.query(
          """
          SELECT u.n::int8 FROM unnest(\(comparisons.map { records[$0].properties })::text[],
            \(comparisons.map { inputs[$0].propertiesJSON })::text[], \(comparisons.map(Int64.init))::int8[]) AS u(a, b, n)
          WHERE u.a::jsonb = u.b::jsonb
          """, logger: logger
        ).decode(Int64.self) {
          sameProperties.insert(Int(index))
        }
      }
      var results: [EventRecord] = []
      for (index, input) in inputs.enumerated() {
        let record = records[index]
        if !fresh[index] {
          let sameTime = input.occurredAt.map { abs($0.timeIntervalSince(record.occurredAt)) < 0.001 } ?? true
          guard record.name == input.name, record.subscriber == subscribers[index], sameProperties.contains(index), sameTime else {
            throw RPCError.field(
              "events[\(index)].idempotency_key", .alreadyExists,
              "idempotency_key '\(input.idempotencyKey)' was recorded for another event (a different name, subscriber, properties or time)")
          }
        }
        results.append(
          EventRecord(
            id: record.id, idempotencyKey: input.idempotencyKey, name: record.name, subscriberID: record.subscriber,
            occurredAt: record.occurredAt, duplicate: !fresh[index]))
      }
      return results
    }
  }

  /// Writes Herald's own event `name` for each of `rows` (a subscriber and its properties as a
  /// JSON object) in the caller's transaction, when some journey that is not archived listens
  /// to it; returns how many were written.
  @discardableResult
  func recordHeraldEvents(
    _ name: String, _ rows: [(subscriber: UUID, properties: String)], at: Date = Date(), on connection: PostgresConnection
  ) async throws -> Int {
    guard !rows.isEmpty else { return 0 }
    return try await connection.query(
      """
      INSERT INTO campaign.events (name, subscriber_id, properties, occurred_at)
      SELECT \(name), u.subscriber_id, u.properties::jsonb, \(at)
      FROM unnest(\(rows.map(\.subscriber))::uuid[], \(rows.map(\.properties))::text[]) AS u(subscriber_id, properties)
      WHERE EXISTS (
        SELECT 1 FROM campaign.journeys j JOIN campaign.journey_versions v ON v.journey_id = j.id
        WHERE j.status IN ('active', 'paused') AND \(name) = ANY(v.listens))
        AND EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = u.subscriber_id AND s.status <> 'erased')
      RETURNING 1
      """, logger: logger
    ).collect().count
  }

  /// Before a person is erased: the trigger feed's lock, then their unfinished enrolments in id
  /// order (waiting for a scheduler batch that holds one), as the trigger processor takes them.
  func lockJourneys(of subscriber: UUID, on connection: PostgresConnection) async throws {
    try await waitForTriggerFeed(on: connection)
    try await connection.query(
      """
      SELECT 1 FROM campaign.journey_enrolments WHERE subscriber_id = \(subscriber) AND status IN ('active', 'waiting')
      ORDER BY id FOR UPDATE
      """, logger: logger)
  }

  /// Erasure (GDPR) of what journeys hold of a person: their events' properties and their
  /// enrolments' context are emptied, and the journeys they are in end for them (`erased`).
  func eraseJourneyData(of subscriber: UUID, on connection: PostgresConnection) async throws {
    try await connection.query(
      "UPDATE campaign.events SET properties = '{}' WHERE subscriber_id = \(subscriber) AND properties <> '{}'", logger: logger)
    try await connection.query(
      """
      UPDATE campaign.journey_enrolments SET context = '{}',
        status = CASE WHEN status IN ('active', 'waiting') THEN 'exited' ELSE status END,
        exit_reason = CASE WHEN status IN ('active', 'waiting') THEN 'erased' ELSE exit_reason END,
        finished_at = coalesce(finished_at, now()), due_at = NULL, waiting_for = NULL
      WHERE subscriber_id = \(subscriber)
      """, logger: logger)
  }

  /// `{"key": "value", ...}` for Herald's events' properties.
  static func properties(_ object: [String: JSONValue]) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return (try? String(decoding: encoder.encode(object), as: UTF8.self)) ?? "{}"
  }
}
