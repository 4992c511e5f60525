import Foundation
import HeraldCore
import HeraldProtos

/// Turns values into writes: a subscriber update from remote values, remote fields from local ones.
enum FieldWriter {
  /// Sets `field` to `value` in an update (attributes are merged into `attributes`).
  static func set(
    _ field: String, to value: JSONValue, in request: inout Herald_Campaign_V1_UpdateSubscriberRequest,
    attributes: inout [String: JSONValue], source: String
  ) throws(RecordFailure) {
    func text() throws(RecordFailure) -> String {
      switch value {
      case .null: return ""
      case .string(let text): return text
      case .number(let number): return Int64(exactly: number).map(String.init) ?? String(number)
      default: throw RecordFailure(field: field, message: "a \(value.typeName) cannot be a subscriber's \(field)")
      }
    }
    switch field {
    case "email": request.email = try text()
    case "phone": request.phone = try text()
    case "whatsapp": request.whatsapp = try text()
    case "first_name": request.firstName = try text()
    case "last_name": request.lastName = try text()
    case "email_subscribed", "sms_subscribed", "whatsapp_subscribed":
      guard case .bool(let subscribed) = value else {
        throw RecordFailure(field: field, message: "\(field) needs a checkbox (true or false), got a \(value.typeName)")
      }
      var consent = Herald_Campaign_V1_ConsentInput()
      consent.subscribed = subscribed
      consent.source = source
      switch field {
      case "email_subscribed": request.emailConsent = consent
      case "sms_subscribed": request.smsConsent = consent
      default: request.whatsappConsent = consent
      }
    default:
      guard let name = SubscriberField.attribute(field) else { return }
      attributes[name] = value == .null ? nil : value
      request.attributesJson = SyncStore.json(JSONValue.object(attributes))
    }
  }

  /// A new subscriber from remote values.
  static func create(from values: [String: JSONValue], source: String) throws(RecordFailure) -> Herald_Campaign_V1_CreateSubscriberRequest {
    var update = Herald_Campaign_V1_UpdateSubscriberRequest()
    var attributes: [String: JSONValue] = [:]
    for (field, value) in values.sorted(by: { $0.key < $1.key }) where SubscriberField.isValid(field) {
      try set(field, to: value, in: &update, attributes: &attributes, source: source)
    }
    guard !update.email.isEmpty || !update.phone.isEmpty else {
      throw RecordFailure(field: "email", message: "the record has neither an email nor a phone: no subscriber can be made of it")
    }
    var request = Herald_Campaign_V1_CreateSubscriberRequest()
    request.email = update.email
    request.phone = update.phone
    request.whatsapp = update.whatsapp
    request.firstName = update.firstName
    request.lastName = update.lastName
    request.attributesJson = update.hasAttributesJson ? update.attributesJson : "{}"
    if update.hasEmailConsent, update.emailConsent.subscribed { request.emailConsent = update.emailConsent }
    if update.hasSmsConsent, update.smsConsent.subscribed { request.smsConsent = update.smsConsent }
    if update.hasWhatsappConsent, update.whatsappConsent.subscribed { request.whatsappConsent = update.whatsappConsent }
    return request
  }

  /// A local value as the remote field takes it.
  static func remote(_ value: JSONValue, for mapping: ResolvedMapping) -> JSONValue {
    if mapping.fieldType == "checkbox", value == .null { return .bool(false) }
    return value
  }
}
