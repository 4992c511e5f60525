import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit

/// What a push notification or a WhatsApp template message carries besides its subject (a push
/// title) and body: stored with the message (`delivery.messages.payload`).
package struct ChannelPayload: Sendable, Equatable, Codable {
  package struct Push: Sendable, Equatable, Codable {
    /// apns or fcm: only that platform's providers send it.
    package var platform: String
    /// The app's custom keys (a JSON object).
    package var data: [String: JSONValue]
    package var deepLink: String?
    package var collapseID: String?
    /// high or normal.
    package var priority: String
    /// Seconds the push service keeps trying a device that is off.
    package var timeToLive: Int

    package init(
      platform: String, data: [String: JSONValue] = [:], deepLink: String? = nil, collapseID: String? = nil,
      priority: String = "high", timeToLive: Int = Self.longestTimeToLive
    ) {
      self.platform = platform
      self.data = data
      self.deepLink = deepLink
      self.collapseID = collapseID
      self.priority = priority
      self.timeToLive = timeToLive
    }

    /// Four weeks: what APNs and FCM keep at most.
    package static let longestTimeToLive = 2_419_200

    enum CodingKeys: String, CodingKey {
      case platform, data, priority
      case deepLink = "deep_link"
      case collapseID = "collapse_id"
      case timeToLive = "time_to_live"
    }
  }

  /// A template approved in WhatsApp Manager with its body's parameters in order.
  package struct WhatsAppTemplate: Sendable, Equatable, Codable {
    package var name: String
    package var language: String
    package var parameters: [String]

    package init(name: String, language: String, parameters: [String]) {
      self.name = name
      self.language = language
      self.parameters = parameters
    }
  }

  package var push: Push?
  package var whatsapp: WhatsAppTemplate?

  package init(push: Push? = nil, whatsapp: WhatsAppTemplate? = nil) {
    self.push = push
    self.whatsapp = whatsapp
  }

  package static let platforms = ["apns", "fcm"]

  /// The payload of a message given over the API, checked against its channel; errors name the
  /// field through `name`. nil for e-mail and SMS.
  static func validate(
    _ message: Herald_Delivery_V1_OutboundMessage, channel: String, name: (String) -> String
  ) throws(RPCError) -> ChannelPayload? {
    func invalid(_ field: String, _ text: String) -> RPCError { .field(name(field), .invalidArgument, "\(name(field)) \(text)") }
    guard !message.hasPush || channel == "push" else { throw invalid("push", "applies to CHANNEL_PUSH only") }
    guard !message.hasWhatsappTemplate || channel == "whatsapp" else {
      throw invalid("whatsapp_template", "applies to CHANNEL_WHATSAPP only")
    }
    switch channel {
    case "push":
      guard message.hasPush else { throw invalid("push", "is required on CHANNEL_PUSH (its platform at least)") }
      let push = message.push
      guard platforms.contains(push.platform) else { throw invalid("push.platform", "must be apns or fcm") }
      let token = message.recipient
      guard token.utf8.count <= 4096, token.wholeMatch(of: /[A-Za-z0-9:_-]{16,}/) != nil else {
        throw invalid("recipient", "must be a device token: 16 to 4,096 letters, digits, colons, dashes or underscores")
      }
      var data: [String: JSONValue] = [:]
      if !push.dataJson.isEmpty {
        guard push.dataJson.utf8.count <= 3000 else { throw invalid("push.data_json", "must be at most 3,000 bytes") }
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(push.dataJson.utf8)) else {
          throw invalid("push.data_json", "must be a JSON object, e.g. {\"order\": \"42\"}")
        }
        for key in object.keys.sorted() where PushData.isReservedKey(key) {
          throw invalid("push.data_json", "may not use the key '\(key)' (the platforms or Herald use it)")
        }
        data = object
      }
      if !push.deepLink.isEmpty {
        guard push.deepLink.count <= 2048, push.deepLink.wholeMatch(of: /[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+/) != nil else {
          throw invalid("push.deep_link", "must be a URL such as myapp://orders/42 or https://example.com/orders/42")
        }
      }
      guard push.collapseID.utf8.count <= 64, !push.collapseID.containsControlCharacter else {
        throw invalid("push.collapse_id", "must be one line of at most 64 bytes")
      }
      guard ["", "high", "normal"].contains(push.priority) else { throw invalid("push.priority", "must be high or normal") }
      guard (0...Push.longestTimeToLive).contains(Int(push.timeToLiveSeconds)) else {
        throw invalid("push.time_to_live_seconds", "must be from 0 to 2,419,200 (4 weeks; 0 means 4 weeks)")
      }
      guard message.subject.count <= 256 else { throw invalid("subject", "(a push notification's title) must be at most 256 characters") }
      return ChannelPayload(
        push: Push(
          platform: push.platform, data: data, deepLink: push.deepLink.isEmpty ? nil : push.deepLink,
          collapseID: push.collapseID.isEmpty ? nil : push.collapseID, priority: push.priority.isEmpty ? "high" : push.priority,
          timeToLive: push.timeToLiveSeconds == 0 ? Push.longestTimeToLive : Int(push.timeToLiveSeconds)))
    case "whatsapp":
      guard message.hasWhatsappTemplate else { return nil }
      let template = message.whatsappTemplate
      guard template.name.wholeMatch(of: /[a-z0-9_]{1,512}/) != nil else {
        throw invalid("whatsapp_template.name", "must be the template's name: lower-case letters, digits and underscores")
      }
      guard template.language.wholeMatch(of: /[a-z]{2,3}(_[A-Z]{2})?/) != nil else {
        throw invalid("whatsapp_template.language", "must be a language code such as en_US or de")
      }
      guard template.parameters.count <= 20 else { throw invalid("whatsapp_template.parameters", "must hold at most 20") }
      for (index, parameter) in template.parameters.enumerated() {
        guard !parameter.isEmpty, parameter.count <= 1024, !parameter.utf8.contains(0) else {
          throw invalid("whatsapp_template.parameters[\(index)]", "must be 1 to 1,024 characters")
        }
      }
      return ChannelPayload(
        whatsapp: WhatsAppTemplate(name: template.name, language: template.language, parameters: template.parameters))
    default:
      return nil
    }
  }
}
