import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Subscribers: create, read, update, list, look up, unsubscribe, export and erase (SPEC §2).
extension CampaignService {
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
      return Self.message(try await store.createSubscriber(subscriber))
    } catch CampaignStoreError.duplicate(let field) {
      throw RPCError.field(field, .alreadyExists, "another subscriber already has this \(field)")
    }
  }

  package func getSubscriber(
    request: Herald_Campaign_V1_GetSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    let id = try Self.id(request.id)
    guard let record = try await store.subscriber(id: id) else { throw Self.notFound(id) }
    return Self.message(record, pushTokens: try await store.pushTokens(of: id))
  }

  package func updateSubscriber(
    request: Herald_Campaign_V1_UpdateSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    let id = try Self.id(request.id)
    return Self.message(try await change(id) { record, now in try Self.apply(request, to: &record, now: now) })
  }

  package func listSubscribers(
    request: Herald_Campaign_V1_ListSubscribersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ListSubscribersResponse {
    guard (0...500).contains(request.pageSize) else {
      throw RPCError.field("page_size", .invalidArgument, "page_size must be from 1 to 500 (0 means 50)")
    }
    let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
    var after: UUID?
    if !request.pageToken.isEmpty {
      guard let data = Data(base64Encoded: request.pageToken), let id = UUID(text: String(decoding: data, as: UTF8.self))
      else { throw RPCError.field("page_token", .invalidArgument, "page_token is not one this service gave out") }
      after = id
    }
    let records: [SubscriberRecord]
    do {
      records = try await store.subscribers(after: after, limit: limit + 1)
    } catch CampaignStoreError.badPageToken {
      throw RPCError.field("page_token", .invalidArgument, "page_token is not one this service gave out")
    }
    var response = Herald_Campaign_V1_ListSubscribersResponse()
    response.subscribers = records.prefix(limit).map { Self.message($0) }
    if records.count > limit, let last = records.prefix(limit).last {
      response.nextPageToken = Data(last.id.uuidString.utf8).base64EncodedString()
    }
    return response
  }

  package func lookupSubscribers(
    request: Herald_Campaign_V1_LookupSubscribersRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_LookupSubscribersResponse {
    let keys = request.ids.count + request.emails.count + request.phones.count
    guard keys <= 500 else {
      throw RPCError.field("ids", .invalidArgument, "at most 500 ids, emails and phones in all can be looked up at once, got \(keys)")
    }
    var ids: [UUID] = []
    for (index, text) in request.ids.enumerated() {
      guard let id = UUID(text: text) else {
        throw RPCError.field("ids[\(index)]", .invalidArgument, "ids[\(index)] '\(text)' is not a UUID")
      }
      ids.append(id)
    }
    var emails: [String] = []
    var phones: [String] = []
    // A malformed e-mail or phone is no subscriber's: it matches nobody.
    for text in request.emails {
      if let email = try? SubscriberValidation.email(text) { emails.append(email) }
    }
    for text in request.phones {
      if let phone = try? SubscriberValidation.phone(text) { phones.append(phone) }
    }
    let records = try await store.lookupSubscribers(ids: ids, emails: emails, phones: phones)
    var response = Herald_Campaign_V1_LookupSubscribersResponse()
    response.subscribers = records.map { Self.message($0) }
    response.engagement = try await store.engagement(of: records.map(\.id)).map(Self.message)
    return response
  }

  package func unsubscribe(
    request: Herald_Campaign_V1_UnsubscribeRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    let id = try Self.id(request.id)
    let channels: [String]
    switch request.channel {
    case .email: channels = ["email"]
    case .sms: channels = ["sms"]
    case .whatsapp: channels = ["whatsapp"]
    case .push: channels = ["push"]
    case .all: channels = ["email", "sms", "whatsapp", "push"]
    case .unspecified, .UNRECOGNIZED:
      throw RPCError.field("channel", .invalidArgument, "channel must be email, sms, whatsapp, push or all")
    }
    let source = request.source.trimmingCharacters(in: .whitespacesAndNewlines)
    let record = try await change(
      id, retiringPushTokens: channels.contains("push") ? "unsubscribed" : nil, pushOnlyIfTokens: channels.count > 1
    ) { record, now in
      channels.compactMap { channel in
        Self.withdraw(channel: channel, of: &record, source: source.isEmpty ? "api" : source, now: now)
      }
    }
    return Self.message(record, pushTokens: try await store.pushTokens(of: id))
  }

  package func exportSubscriber(
    request: Herald_Campaign_V1_ExportSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_SubscriberExport {
    let id = try Self.id(request.id)
    guard let record = try await store.subscriber(id: id) else { throw Self.notFound(id) }
    var export = Herald_Campaign_V1_SubscriberExport()
    export.subscriber = Self.message(record, pushTokens: try await store.pushTokens(of: id))
    export.consentHistory = try await store.consentHistory(of: id).map { event in
      var message = Herald_Campaign_V1_ConsentEvent()
      message.channel = event.channel
      message.subscribed = event.subscribed
      message.source = event.source
      message.occurredAt = Google_Protobuf_Timestamp(date: event.occurredAt)
      message.campaignID = event.campaignID?.lowercasedString ?? ""
      return message
    }
    export.exportedAt = Google_Protobuf_Timestamp(date: Date())
    return export
  }

  package func eraseSubscriber(
    request: Herald_Campaign_V1_EraseSubscriberRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Subscriber {
    let id = try Self.id(request.id)
    return Self.message(
      try await change(id, erasing: true, retiringPushTokens: "erased") { record, now in
        guard record.status != "erased" else { return [] }
        let events = ["email", "sms", "whatsapp"].compactMap {
          Self.withdraw(channel: $0, of: &record, source: "erasure", now: now)
        }
        record.email = nil
        record.phone = nil
        record.whatsapp = nil
        record.firstName = ""
        record.lastName = ""
        record.attributesJSON = "{}"
        for keyPath in [\SubscriberRecord.emailConsent, \SubscriberRecord.smsConsent, \SubscriberRecord.whatsappConsent] {
          record[keyPath: keyPath].source = nil
          record[keyPath: keyPath].consentedAt = nil
        }
        record.status = "erased"
        return events
      })
  }

  /// Runs a locked change of one subscriber, mapping store errors to RPC errors.
  /// `retiringPushTokens`: the reason the subscriber's live push tokens are retired with, in the
  /// same transaction (an unsubscribe from push, an erasure).
  private func change(
    _ id: UUID, erasing: Bool = false, retiringPushTokens: String? = nil, pushOnlyIfTokens: Bool = false,
    _ body: @escaping @Sendable (inout SubscriberRecord, Date) throws -> [ConsentEvent]
  ) async throws -> SubscriberRecord {
    do {
      guard
        let record = try await store.updateSubscriber(
          id: id, erasing: erasing, retiringPushTokens: retiringPushTokens, pushOnlyIfTokens: pushOnlyIfTokens, body)
      else { throw Self.notFound(id) }
      return record
    } catch CampaignStoreError.duplicate(let field) {
      throw RPCError.field(field, .alreadyExists, "another subscriber already has this \(field)")
    }
  }

  static func notFound(_ id: UUID) -> RPCError {
    RPCError.field("id", .notFound, "no subscriber has id \(id.lowercasedString)")
  }

  /// Withdraws consent on one channel at once; nil (no event) when there was none to withdraw.
  /// Push has no consent flag: its event records the unsubscribe, and the store retires the tokens.
  static func withdraw(channel: String, of record: inout SubscriberRecord, source: String, now: Date) -> ConsentEvent? {
    if channel == "push" {
      guard record.status != "erased" else { return nil }
      return ConsentEvent(channel: "push", subscribed: false, source: source, occurredAt: now)
    }
    let keyPath = SubscriberRecord.consent(channel)
    guard record[keyPath: keyPath].subscribed else { return nil }
    record[keyPath: keyPath].subscribed = false
    record[keyPath: keyPath].unsubscribedAt = now
    return ConsentEvent(channel: channel, subscribed: false, source: source, occurredAt: now)
  }

  /// Applies an update to a locked record; returns the consent events it causes.
  static func apply(
    _ request: Herald_Campaign_V1_UpdateSubscriberRequest, to record: inout SubscriberRecord, now: Date
  ) throws -> [ConsentEvent] {
    guard record.status != "erased" else {
      throw RPCError(code: .failedPrecondition, message: "subscriber \(record.id.lowercasedString) was erased and cannot be changed")
    }
    do {
      if request.hasEmail { record.email = try SubscriberValidation.email(request.email) }
      if request.hasPhone { record.phone = try SubscriberValidation.phone(request.phone) }
      if request.hasWhatsapp { record.whatsapp = try SubscriberValidation.phone(request.whatsapp, field: "whatsapp") }
      if request.hasFirstName { record.firstName = try SubscriberValidation.name(request.firstName, field: "first_name") }
      if request.hasLastName { record.lastName = try SubscriberValidation.name(request.lastName, field: "last_name") }
      if request.hasAttributesJson { record.attributesJSON = try SubscriberValidation.attributes(request.attributesJson) }
    } catch {
      throw RPCError.field(error.field, .invalidArgument, error.message)
    }
    if request.hasStatus {
      guard ["active", "archived"].contains(request.status) else {
        throw RPCError.field("status", .invalidArgument, "status '\(request.status)' cannot be set: use active or archived")
      }
      guard record.status != "blocked" else {
        throw RPCError(
          code: .failedPrecondition, message: "subscriber \(record.id.lowercasedString) is blocked; its status cannot be changed")
      }
      record.status = request.status
    }
    guard record.email != nil || record.phone != nil else {
      throw RPCError.field("email", .invalidArgument, "a subscriber needs an email or a phone")
    }
    var events: [ConsentEvent] = []
    for (channel, input, present, contact) in [
      ("email", request.emailConsent, request.hasEmailConsent, record.email),
      ("sms", request.smsConsent, request.hasSmsConsent, record.phone),
      ("whatsapp", request.whatsappConsent, request.hasWhatsappConsent, record.whatsapp),
    ] {
      let keyPath = SubscriberRecord.consent(channel)
      let field = "\(channel)_consent"
      if present && input.subscribed {
        guard contact != nil else {
          throw RPCError.field(field, .invalidArgument, "\(field) is given but the subscriber has no \(Self.contactField(channel))")
        }
        let source = input.source.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !source.isEmpty else {
          throw RPCError.field("\(field).source", .invalidArgument, "\(field).source is required: where did the consent come from?")
        }
        if !record[keyPath: keyPath].subscribed {
          record[keyPath: keyPath] = Consent(subscribed: true, source: source, consentedAt: now, unsubscribedAt: nil)
          events.append(ConsentEvent(channel: channel, subscribed: true, source: source, occurredAt: now))
        }
      } else if present {
        let source = input.source.trimmingCharacters(in: .whitespacesAndNewlines)
        if let event = withdraw(channel: channel, of: &record, source: source.isEmpty ? "api" : source, now: now) {
          events.append(event)
        }
      }
      guard contact != nil || !record[keyPath: keyPath].subscribed else {
        let contactField = Self.contactField(channel)
        throw RPCError.field(
          contactField, .invalidArgument, "\(contactField) cannot be removed while \(field) is given; unsubscribe first")
      }
    }
    return events
  }

  static func validate(_ request: Herald_Campaign_V1_CreateSubscriberRequest) throws(SubscriberValidation.Invalid) -> NewSubscriber {
    let email = try SubscriberValidation.email(request.email)
    let phone = try SubscriberValidation.phone(request.phone)
    let whatsapp = try SubscriberValidation.phone(request.whatsapp, field: "whatsapp")
    guard email != nil || phone != nil else {
      throw .init(field: "email", message: "a subscriber needs an email or a phone")
    }
    func source(_ consent: Herald_Campaign_V1_ConsentInput, channel: String, contact: String?) throws(SubscriberValidation.Invalid)
      -> String?
    {
      guard consent.subscribed else { return nil }
      let field = "\(channel)_consent"
      guard contact != nil else {
        throw .init(field: field, message: "\(field) is given but the subscriber has no \(contactField(channel))")
      }
      let source = SubscriberValidation.trimmed(consent.source)
      guard !source.isEmpty else {
        throw .init(field: "\(field).source", message: "\(field).source is required: where did the consent come from?")
      }
      return source
    }
    guard request.pushTokens.count <= 20 else {
      throw .init(field: "push_tokens", message: "push_tokens holds \(request.pushTokens.count); at most 20")
    }
    var tokens: [NewPushToken] = []
    for (index, token) in request.pushTokens.enumerated() {
      let field = "push_tokens[\(index)]"
      guard ["apns", "fcm"].contains(token.platform) else {
        throw .init(field: "\(field).platform", message: "\(field).platform must be apns or fcm")
      }
      guard token.token.utf8.count <= 4096, token.token.wholeMatch(of: /[A-Za-z0-9:_-]{16,}/) != nil else {
        throw .init(
          field: "\(field).token",
          message: "\(field).token must be the device token the platform gave: 16 to 4,096 letters, digits, colons, dashes or underscores")
      }
      guard token.appID.wholeMatch(of: /[A-Za-z0-9._-]{0,255}/) != nil else {
        throw .init(field: "\(field).app_id", message: "\(field).app_id must be a bundle id or package name such as com.example.shop")
      }
      tokens.append(NewPushToken(platform: token.platform, token: token.token, appID: token.appID))
    }
    return NewSubscriber(
      email: email, phone: phone,
      firstName: try SubscriberValidation.name(request.firstName, field: "first_name"),
      lastName: try SubscriberValidation.name(request.lastName, field: "last_name"),
      attributesJSON: try SubscriberValidation.attributes(request.attributesJson),
      emailConsentSource: try source(request.emailConsent, channel: "email", contact: email),
      smsConsentSource: try source(request.smsConsent, channel: "sms", contact: phone),
      whatsapp: whatsapp, whatsappConsentSource: try source(request.whatsappConsent, channel: "whatsapp", contact: whatsapp),
      pushTokens: tokens)
  }

  /// The field holding the contact a channel's consent needs.
  static func contactField(_ channel: String) -> String {
    switch channel {
    case "email": "email"
    case "whatsapp": "whatsapp"
    default: "phone"
    }
  }

  static func message(_ record: SubscriberRecord, pushTokens: [PushTokenRecord] = []) -> Herald_Campaign_V1_Subscriber {
    func consent(_ consent: Consent) -> Herald_Campaign_V1_ChannelConsent {
      var message = Herald_Campaign_V1_ChannelConsent()
      message.subscribed = consent.subscribed
      message.source = consent.source ?? ""
      if let date = consent.consentedAt { message.consentedAt = Google_Protobuf_Timestamp(date: date) }
      if let date = consent.unsubscribedAt { message.unsubscribedAt = Google_Protobuf_Timestamp(date: date) }
      return message
    }
    var message = Herald_Campaign_V1_Subscriber()
    message.id = record.id.lowercasedString
    message.email = record.email ?? ""
    message.phone = record.phone ?? ""
    message.firstName = record.firstName
    message.lastName = record.lastName
    message.attributesJson = record.attributesJSON
    message.emailConsent = consent(record.emailConsent)
    message.smsConsent = consent(record.smsConsent)
    message.whatsapp = record.whatsapp ?? ""
    message.whatsappConsent = consent(record.whatsappConsent)
    message.pushTokens = pushTokens.map(Self.message)
    if let at = record.pushUnsubscribedAt { message.pushUnsubscribedAt = Google_Protobuf_Timestamp(date: at) }
    message.status = record.status
    message.createdAt = Google_Protobuf_Timestamp(date: record.createdAt)
    message.updatedAt = Google_Protobuf_Timestamp(date: record.updatedAt)
    return message
  }
}
