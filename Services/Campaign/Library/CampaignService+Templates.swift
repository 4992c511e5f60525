import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Templates: checked at save time, previewed for a subscriber or given values (SPEC §2).
extension CampaignService {
  package func createTemplate(
    request: Herald_Campaign_V1_CreateTemplateRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Template {
    let name = try Self.name(request.name)
    let template: MessageTemplate
    do {
      template = try MessageTemplate(
        channel: request.channel, format: request.format, subject: request.subject, body: request.body,
        variables: request.variables.map { TemplateVariable(name: $0.name, defaultValue: $0.hasDefaultValue ? $0.defaultValue : nil) },
        content: try Self.content(request))
    } catch {
      throw Self.invalid(error)
    }
    return Self.message(try await store.createTemplate(name: name, template: template))
  }

  package func getTemplate(request: Herald_Campaign_V1_GetTemplateRequest, context: ServerContext) async throws
    -> Herald_Campaign_V1_Template
  {
    Self.message(try await store.template(id: try Self.uuid(request.id, field: "id"), field: "id"))
  }

  package func listTemplates(
    request: Herald_Campaign_V1_ListTemplatesRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListTemplatesResponse {
    var response = Herald_Campaign_V1_ListTemplatesResponse()
    response.templates = try await store.templates().map(Self.message)
    return response
  }

  package func previewTemplate(
    request: Herald_Campaign_V1_PreviewTemplateRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_TemplatePreview {
    let record = try await store.template(id: try Self.uuid(request.templateID, field: "template_id"))
    var values: [String: String] = [:]
    if !request.subscriberID.isEmpty {
      let id = try Self.uuid(request.subscriberID, field: "subscriber_id")
      guard let subscriber = try await store.subscriber(id: id) else {
        throw RPCError.field("subscriber_id", .notFound, "no subscriber has id \(id.lowercasedString)")
      }
      values = MessageTemplate.values(of: subscriber)
    }
    // Each recipient of a campaign gets their own link; a preview shows where it leads.
    for name in MessageTemplate.linkFields { values[name] = "\(links.publicURL)/u/preview" }
    for (key, value) in request.variables.fields {
      switch value.kind {
      case .stringValue(let text): values[key] = text
      case .boolValue(let flag): values[key] = flag ? "true" : "false"
      case .numberValue(let number):
        values[key] = number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
      default:
        throw RPCError.field("variables.\(key)", .invalidArgument, "variables.\(key) must be a string, number or boolean")
      }
    }
    let rendered: (subject: String, body: String)
    do {
      rendered = try record.template.render(values)
      _ = try record.template.renderContent(values)
    } catch {
      throw Self.invalid(error)
    }
    var preview = Herald_Campaign_V1_TemplatePreview()
    preview.subject = rendered.subject
    preview.body = rendered.body
    if record.template.channel == "sms" { preview.smsLength = Self.message(SMSLength.measure(rendered.body)) }
    return preview
  }

  /// A push template's data and deep link, a WhatsApp template's approved template.
  static func content(_ request: Herald_Campaign_V1_CreateTemplateRequest) throws(SubscriberValidation.Invalid) -> ChannelContent {
    var content = ChannelContent()
    if request.hasPush {
      var data: [String: JSONValue] = [:]
      let text = request.push.dataJson.trimmingCharacters(in: .whitespacesAndNewlines)
      if !text.isEmpty {
        guard text.utf8.count <= 3000 else { throw .init(field: "push.data_json", message: "push.data_json must be at most 3,000 bytes") }
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)) else {
          throw .init(field: "push.data_json", message: "push.data_json must be a JSON object, e.g. {\"order\": \"{{order_id}}\"}")
        }
        data = object
      }
      content.push = ChannelContent.Push(data: data, deepLink: request.push.deepLink)
    }
    if request.hasWhatsapp {
      content.whatsapp = ChannelContent.WhatsApp(
        templateName: request.whatsapp.templateName, language: request.whatsapp.language, parameters: request.whatsapp.parameters)
    }
    return content
  }

  static func message(_ measure: SMSLength.Measure) -> Herald_Campaign_V1_SmsLength {
    var message = Herald_Campaign_V1_SmsLength()
    message.encoding = measure.encoding
    message.units = Int32(measure.units)
    message.segments = Int32(measure.segments)
    return message
  }

  static func message(_ record: TemplateRecord) -> Herald_Campaign_V1_Template {
    var message = Herald_Campaign_V1_Template()
    message.id = record.id.lowercasedString
    message.name = record.name
    message.channel = record.template.channel
    message.subject = record.template.subject
    message.body = record.template.body
    message.format = record.template.format
    message.variables = record.template.variables.map { variable in
      var item = Herald_Campaign_V1_TemplateVariable()
      item.name = variable.name
      if let value = variable.defaultValue { item.defaultValue = value }
      return item
    }
    if record.template.channel == "sms" { message.smsLength = Self.message(SMSLength.measure(record.template.body)) }
    if let push = record.template.content.push {
      message.push = .with {
        if !push.data.isEmpty {
          $0.dataJson = (try? Self.sortedJSON.encode(push.data)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
        $0.deepLink = push.deepLink
      }
    }
    if let whatsapp = record.template.content.whatsapp {
      message.whatsapp = .with {
        $0.templateName = whatsapp.templateName
        $0.language = whatsapp.language
        $0.parameters = whatsapp.parameters
      }
    }
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    return message
  }
}

extension CampaignService {
  /// JSON with its keys in order: the same data always reads the same.
  static let sortedJSON: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }()
}
