import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldServerKit
import Logging
import PostgresNIO

/// Segments: stored filters over attributes and consent (SPEC §2), compiled by `SegmentFilter`.
extension CampaignStore {
  /// Counts of the subscribers a predicate (over `campaign.subscribers s`) selects.
  private func counts(predicate: String, builder: SQLBuilder, on connection: PostgresConnection) async throws -> AudienceCounts {
    let row = try await connection.query(
      builder.query("SELECT \(Self.countColumns) FROM campaign.subscribers s WHERE \(predicate)"), logger: logger
    ).collect().first
    guard let (subscribers, email, sms) = try row?.decode((Int64, Int64, Int64).self) else {
      throw PostgresError.protocol("count gave no row")
    }
    return AudienceCounts(subscribers: subscribers, emailSubscribed: email, smsSubscribed: sms)
  }

  /// Checks and saves a segment with its counts; INVALID_ARGUMENT naming the condition's field,
  /// NOT_FOUND naming `conditions[i].value` for a list that does not exist.
  package func createSegment(name: String, match: String, conditions: [SegmentCondition]) async throws -> SegmentRecord {
    var builder = SQLBuilder()
    let compiled: (sql: String, lists: [UUID])
    do {
      compiled = try SegmentFilter.compile(match: match, conditions: conditions, into: &builder)
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    let encoded = String(decoding: try JSONEncoder().encode(conditions), as: UTF8.self)
    let predicate = builder
    do {
      return try await transaction { connection in
        for (index, list) in compiled.lists.enumerated() {
          let found = try await connection.query("SELECT 1 FROM campaign.lists WHERE id = \(list)", logger: logger).collect()
          guard !found.isEmpty else {
            let position = conditions.firstIndex { $0.field == "list" && UUID(text: Self.unquoted($0.valueJSON)) == list } ?? index
            throw Self.notFound("list", list, field: "conditions[\(position)].value")
          }
        }
        let counts = try await self.counts(predicate: compiled.sql, builder: predicate, on: connection)
        let row = try await connection.query(
          """
          INSERT INTO campaign.segments (name, match, conditions) VALUES (\(name), \(match), \(encoded)::jsonb)
          RETURNING id, created_at
          """, logger: logger
        ).collect().first
        guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
        return SegmentRecord(id: id, name: name, match: match, conditions: conditions, createdAt: createdAt, counts: counts)
      }
    } catch  where error.sqlState == "23505" {
      throw Self.duplicateName("segment", name)
    }
  }

  private static func unquoted(_ json: String) -> String {
    if case .string(let text) = JSONValue.parse(json) { return text }
    return json
  }

  /// Every segment (or the one with `id`), oldest first, each with its counts as of now.
  package func segments(id: UUID? = nil) async throws -> [SegmentRecord] {
    let rows = try await client.query(
      """
      SELECT id, name, match, conditions::text, created_at FROM campaign.segments
      WHERE \(id)::uuid IS NULL OR id = \(id) ORDER BY created_at, id
      """, logger: logger
    ).collect()
    var segments: [SegmentRecord] = []
    for row in rows {
      let (id, name, match, conditionsJSON, createdAt) = try row.decode((UUID, String, String, String, Date).self)
      let conditions = try Self.storedConditions(conditionsJSON, of: id)
      let (predicate, builder) = try Self.predicate(match: match, conditions: conditions)
      let counts = try await client.withConnection { connection in
        try await self.counts(predicate: predicate, builder: builder, on: connection)
      }
      segments.append(SegmentRecord(id: id, name: name, match: match, conditions: conditions, createdAt: createdAt, counts: counts))
    }
    return segments
  }

  /// A segment's match and conditions, without counting its members; nil when there is none.
  func segmentFilter(id: UUID) async throws -> (match: String, conditions: [SegmentCondition])? {
    guard
      let (match, json) = try await client.query(
        "SELECT match, conditions::text FROM campaign.segments WHERE id = \(id)", logger: logger
      ).decode((String, String).self).elements().first
    else { return nil }
    return (match, try Self.storedConditions(json, of: id))
  }

  /// A stored segment's conditions (jsonb as text).
  static func storedConditions(_ json: String, of segment: UUID) throws -> [SegmentCondition] {
    do {
      return try JSONDecoder().decode([SegmentCondition].self, from: Data(json.utf8))
    } catch {
      throw RPCError(code: .dataLoss, message: "the conditions of stored segment \(segment.lowercasedString) no longer decode")
    }
  }

  /// A stored segment's predicate. It was checked when saved, so an error here means the stored
  /// row was changed behind the service's back.
  static func predicate(match: String, conditions: [SegmentCondition], builder: SQLBuilder = SQLBuilder()) throws -> (String, SQLBuilder) {
    var builder = builder
    do {
      return (try SegmentFilter.compile(match: match, conditions: conditions, into: &builder).sql, builder)
    } catch {
      throw RPCError(code: .dataLoss, message: "a stored segment no longer compiles (\(error.field): \(error.message))")
    }
  }
}
