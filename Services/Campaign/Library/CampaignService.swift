import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// `herald.campaign.v1.CampaignService`.
package struct CampaignService: Herald_Campaign_V1_CampaignService.SimpleServiceProtocol {
  let store: any SubscriberStore

  package init(store: any SubscriberStore) {
    self.store = store
  }

  package func createSubscriber(
    request: Herald_Campaign_V1_CreateSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    let subscriber: NewSubscriber
    do {
      subscriber = try Self.validate(request)
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    do {
      return Self.message(try await store.create(subscriber))
    } catch SubscriberStoreError.duplicate(let field) {
      throw RPCError.field(field, .alreadyExists, "another subscriber already has this \(field)")
    }
  }

  package func getSubscriber(
    request: Herald_Campaign_V1_GetSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    guard let id = UUID(uuidString: request.id) else {
      throw RPCError.field("id", .invalidArgument, "id '\(request.id)' is not a UUID")
    }
    guard let record = try await store.get(id: id) else {
      throw RPCError.field("id", .notFound, "no subscriber has id \(id.uuidString.lowercased())")
    }
    return Self.message(record)
  }

  static func validate(_ request: Herald_Campaign_V1_CreateSubscriberRequest) throws(SubscriberValidation.Invalid) -> NewSubscriber {
    let email = try SubscriberValidation.email(request.email)
    let phone = try SubscriberValidation.phone(request.phone)
    guard email != nil || phone != nil else {
      throw .init(field: "email", message: "a subscriber needs an email or a phone")
    }
    func source(_ consent: Herald_Campaign_V1_ConsentInput, channel: String, contact: String?) throws(SubscriberValidation.Invalid) -> String? {
      guard consent.subscribed else { return nil }
      let field = "\(channel)_consent"
      guard contact != nil else {
        throw .init(field: field, message: "\(field) is given but the subscriber has no \(channel == "email" ? "email" : "phone")")
      }
      let source = consent.source.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !source.isEmpty else {
        throw .init(field: "\(field).source", message: "\(field).source is required: where did the consent come from?")
      }
      return source
    }
    return NewSubscriber(
      email: email, phone: phone,
      firstName: try SubscriberValidation.name(request.firstName, field: "first_name"),
      lastName: try SubscriberValidation.name(request.lastName, field: "last_name"),
      attributesJSON: try SubscriberValidation.attributes(request.attributesJson),
      emailConsentSource: try source(request.emailConsent, channel: "email", contact: email),
      smsConsentSource: try source(request.smsConsent, channel: "sms", contact: phone))
  }

  static func message(_ record: SubscriberRecord) -> Herald_Campaign_V1_Subscriber {
    func consent(_ consent: Consent) -> Herald_Campaign_V1_ChannelConsent {
      var message = Herald_Campaign_V1_ChannelConsent()
      message.subscribed = consent.subscribed
      message.source = consent.source ?? ""
      if let date = consent.consentedAt { message.consentedAt = Google_Protobuf_Timestamp(date: date) }
      if let date = consent.unsubscribedAt { message.unsubscribedAt = Google_Protobuf_Timestamp(date: date) }
      return message
    }
    var message = Herald_Campaign_V1_Subscriber()
    message.id = record.id.uuidString.lowercased()
    message.email = record.email ?? ""
    message.phone = record.phone ?? ""
    message.firstName = record.firstName
    message.lastName = record.lastName
    message.attributesJson = record.attributesJSON
    message.emailConsent = consent(record.emailConsent)
    message.smsConsent = consent(record.smsConsent)
    message.status = record.status
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    message.updatedAt = Google_Protobuf_Timestamp(date: record.updatedAt)
    return message
  }
}
