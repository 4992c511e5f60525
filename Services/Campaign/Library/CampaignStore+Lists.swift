import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Lists and their members (SPEC §2).
extension CampaignStore {
  /// The counts of `AudienceCounts` over subscribers `s`.
  static let countColumns = """
    count(*) FILTER (WHERE s.status <> 'erased'),
    count(*) FILTER (WHERE s.status = 'active' AND s.email_subscribed),
    count(*) FILTER (WHERE s.status = 'active' AND s.sms_subscribed)
    """

  package func createList(name: String, description: String) async throws -> ListRecord {
    do {
      let row = try await client.query(
        """
        INSERT INTO campaign.lists (name, description) VALUES (\(name), \(description))
        RETURNING id, created_at
        """, logger: logger
      ).collect().first
      guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
      return ListRecord(
        id: id, name: name, description: description, createdAt: createdAt,
        counts: .init(subscribers: 0, emailSubscribed: 0, smsSubscribed: 0))
    } catch  where error.sqlState == "23505" {
      throw Self.duplicateName("list", name)
    }
  }

  /// Every list (or the one with `id`), oldest first, with its counts.
  package func lists(id: UUID? = nil) async throws -> [ListRecord] {
    let rows = try await client.query(
      """
      SELECT l.id, l.name, l.description, l.created_at, c.* FROM campaign.lists l
      CROSS JOIN LATERAL (
        SELECT \(unescaped: Self.countColumns)
        FROM campaign.list_members m JOIN campaign.subscribers s ON s.id = m.subscriber_id WHERE m.list_id = l.id
      ) c
      WHERE \(id)::uuid IS NULL OR l.id = \(id)
      ORDER BY l.created_at, l.id
      """, logger: logger)
    var lists: [ListRecord] = []
    for try await (id, name, description, createdAt, subscribers, email, sms) in rows.decode(
      (UUID, String, String, Date, Int64, Int64, Int64).self)
    {
      lists.append(
        ListRecord(
          id: id, name: name, description: description, createdAt: createdAt,
          counts: .init(subscribers: subscribers, emailSubscribed: email, smsSubscribed: sms)))
    }
    return lists
  }

  /// The list with `id`; NOT_FOUND naming `field` when there is none.
  package func list(id: UUID, field: String = "id") async throws -> ListRecord {
    guard let list = try await lists(id: id).first else { throw Self.notFound("list", id, field: field) }
    return list
  }

  /// Whether a list has this id (without counting its members).
  package func listExists(id: UUID) async throws -> Bool {
    try await !client.query("SELECT 1 FROM campaign.lists WHERE id = \(id)", logger: logger).collect().isEmpty
  }

  /// Adds or removes members in one transaction; all ids must name subscribers (NOT_FOUND naming
  /// `subscriber_ids[i]` for the first that does not). Returns how many memberships changed.
  package func changeMembers(listID: UUID, subscriberIDs: [UUID], add: Bool) async throws -> Int {
    try await transaction { connection in
      let exists =
        try await connection.query(
          "SELECT 1 FROM campaign.lists WHERE id = \(listID) FOR SHARE", logger: logger
        ).collect().count == 1
      guard exists else { throw Self.notFound("list", listID, field: "list_id") }
      if add {
        let unknown = try await connection.query(
          """
          SELECT t.i FROM unnest(\(subscriberIDs)::uuid[]) WITH ORDINALITY AS t(id, i)
          WHERE NOT EXISTS (SELECT 1 FROM campaign.subscribers s WHERE s.id = t.id) ORDER BY t.i LIMIT 1
          """, logger: logger
        ).collect().first?.decode(Int64.self)
        if let unknown {
          let index = Int(unknown) - 1
          guard subscriberIDs.indices.contains(index) else {
            throw PostgresError.protocol("unnest gave ordinality \(unknown) for \(subscriberIDs.count) ids")
          }
          throw Self.notFound("subscriber", subscriberIDs[index], field: "subscriber_ids[\(index)]")
        }
        let joined = try await connection.query(
          """
          INSERT INTO campaign.list_members (list_id, subscriber_id)
          SELECT \(listID), id FROM unnest(\(subscriberIDs)::uuid[]) AS t(id) ON CONFLICT DO NOTHING RETURNING subscriber_id
          """, logger: logger
        ).decode(UUID.self).elements()
        // Journeys triggered by joining this list (SPEC §12).
        let properties = Self.properties(["list_id": .string(listID.lowercasedString)])
        try await recordHeraldEvents(JourneyEvents.listJoined, joined.map { ($0, properties) }, on: connection)
        return joined.count
      }
      return try await connection.query(
        """
        DELETE FROM campaign.list_members WHERE list_id = \(listID) AND subscriber_id = ANY(\(subscriberIDs)::uuid[])
        RETURNING 1
        """, logger: logger
      ).collect().count
    }
  }
}
