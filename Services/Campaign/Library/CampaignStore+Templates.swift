import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// Message templates (SPEC §2), stored as their checked text and declared variables.
extension CampaignStore {
  package func createTemplate(name: String, template: MessageTemplate) async throws -> TemplateRecord {
    let variables = String(decoding: try JSONEncoder().encode(template.variables), as: UTF8.self)
    let content = template.content.isEmpty ? nil : String(decoding: try JSONEncoder().encode(template.content), as: UTF8.self)
    do {
      let row = try await client.query(
        """
        INSERT INTO campaign.templates (name, channel, format, subject, body, variables, content)
        VALUES (
          \(name), \(template.channel), \(template.format), \(template.subject), \(template.body), \(variables)::jsonb,
          \(content)::jsonb)
        RETURNING id, created_at
        """, logger: logger
      ).collect().first
      guard let (id, createdAt) = try row?.decode((UUID, Date).self) else { throw PostgresError.protocol("no row returned") }
      return TemplateRecord(id: id, name: name, template: template, createdAt: createdAt)
    } catch  where error.sqlState == "23505" {
      throw Self.duplicateName("template", name)
    }
  }

  /// Every template (or the one with `id`, or those of `ids`), oldest first.
  package func templates(id: UUID? = nil, ids: [UUID]? = nil) async throws -> [TemplateRecord] {
    let rows = try await client.query(
      """
      SELECT id, name, channel, format, subject, body, variables::text, created_at, content::text FROM campaign.templates
      WHERE (\(id)::uuid IS NULL OR id = \(id)) AND (\(ids)::uuid[] IS NULL OR id = ANY(\(ids)::uuid[]))
      ORDER BY created_at, id
      """, logger: logger)
    var templates: [TemplateRecord] = []
    for try await (id, name, channel, format, subject, body, variablesJSON, createdAt, content) in rows.decode(
      (UUID, String, String, String, String, String, String, Date, String?).self)
    {
      let template = try Self.storedTemplate(
        channel: channel, format: format, subject: subject, body: body, variablesJSON: variablesJSON, contentJSON: content,
        what: "stored template \(id.lowercasedString)")
      templates.append(TemplateRecord(id: id, name: name, template: template, createdAt: createdAt))
    }
    return templates
  }

  /// The template with `id`; NOT_FOUND naming `field` when there is none.
  package func template(id: UUID, field: String = "template_id") async throws -> TemplateRecord {
    guard let record = try await templates(id: id).first else { throw Self.notFound("template", id, field: field) }
    return record
  }

  /// A stored template parsed again. It was checked when saved, so an error here (DATA_LOSS,
  /// naming `what`) means the stored row was changed behind the service's back.
  static func storedTemplate(
    channel: String, format: String, subject: String, body: String, variablesJSON: String, contentJSON: String?, what: String
  ) throws -> MessageTemplate {
    let variables: [TemplateVariable]
    let content: ChannelContent
    do {
      variables = try JSONDecoder().decode([TemplateVariable].self, from: Data(variablesJSON.utf8))
      content = try contentJSON.map { try JSONDecoder().decode(ChannelContent.self, from: Data($0.utf8)) } ?? ChannelContent()
    } catch {
      throw RPCError(code: .dataLoss, message: "the variables or content of \(what) no longer decode")
    }
    do {
      return try MessageTemplate(channel: channel, format: format, subject: subject, body: body, variables: variables, content: content)
    } catch {
      throw RPCError(code: .dataLoss, message: "\(what) no longer parses: \(error.message)")
    }
  }
}
