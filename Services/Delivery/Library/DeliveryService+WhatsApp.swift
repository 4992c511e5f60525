import Crypto
import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Metrics
import SwiftProtobuf

/// WhatsApp webhooks (the Cloud API's shape): delivery statuses of the messages Herald sent and
/// the messages people send to its numbers, signed with the app secret (X-Hub-Signature-256).
extension DeliveryService {
  package func ingestWhatsAppWebhook(
    request: Herald_Delivery_V1_IngestWhatsAppWebhookRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_IngestWhatsAppWebhookResponse {
    if providers.entry(named: request.provider) == nil { try await providers.refresh() }
    // An unknown provider, one of another kind or one whose secret is not set is refused exactly
    // as a bad signature is, so that nobody can find out which provider names exist.
    var settings: WhatsAppSettings?
    if case .whatsapp(let found) = providers.entry(named: request.provider)?.config.kind { settings = found }
    let secret = settings.flatMap { try? ProviderKey.read($0.appSecretVariable, from: providers.keys) }
    guard Self.hubSignatureHolds(request.signature, body: request.body, secret: secret ?? Self.unguessableSecret), secret != nil
    else {
      throw RPCError.field(
        "signature", .unauthenticated, "the X-Hub-Signature-256 is missing or is not the HMAC-SHA256 of the body with the app secret")
    }
    guard let settings else { throw RPCError(code: .internalError, message: "unreachable: a verified provider without settings") }
    if request.verifyOnly { return .init() }

    let webhook = try WhatsAppWebhook.parse(request.body)
    // A status can come before the send that made its message recorded the message's id (the
    // worker records it with its batch): a recent one naming no message is answered 503, before
    // anything is applied, and WhatsApp sends the whole webhook again later.
    if !webhook.recent.isEmpty {
      let known = try await store.knownProviderMessageIDs(webhook.recent.sorted(), provider: request.provider)
      if let missing = webhook.recent.sorted().first(where: { !known.contains($0) }) {
        throw RPCError(
          code: .unavailable, message: "status for \(missing), whose send is not recorded yet: send the webhook again in a moment")
      }
    }
    let (applied, ignored) = try await store.apply(webhook.statuses, provider: request.provider)
    for (type, count) in Dictionary(grouping: applied, by: \.type).mapValues(\.count) {
      Counter(label: "herald_delivery_webhook_events_total", dimensions: [("provider", request.provider), ("type", type)])
        .increment(by: count)
    }
    var response = Herald_Delivery_V1_IngestWhatsAppWebhookResponse()
    response.applied = Int32(applied.count)
    response.ignored = Int32(ignored.count + webhook.skipped)
    response.notes = ignored + webhook.notes
    let keywords = Herald_Delivery_V1_SmsKeywordSettings()
    for var message in webhook.messages {
      message.to = settings.phoneNumber
      // The keywords of SMS (STOP, START, HELP...) mean the same on WhatsApp; the answers go back
      // on WhatsApp, inside the window the message itself opened.
      var decision = Self.decide(message, settings: keywords)
      if message.from == settings.phoneNumber { decision = InboundDecision(action: "auto_reply", keyword: "sent by Herald itself") }
      let (record, duplicate) = try await store.ingestInbound(message, provider: request.provider, decision: decision)
      if !duplicate {
        Counter(label: "herald_delivery_inbound_total", dimensions: [("channel", record.channel), ("action", record.action)])
          .increment()
      }
      response.inbound.append(Self.inboundMessage(record))
    }
    return response
  }

  package func verifyWhatsAppWebhook(
    request: Herald_Delivery_V1_VerifyWhatsAppWebhookRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_VerifyWhatsAppWebhookResponse {
    if providers.entry(named: request.provider) == nil { try await providers.refresh() }
    var expected: String?
    if case .whatsapp(let settings) = providers.entry(named: request.provider)?.config.kind, let variable = settings.verifyTokenVariable {
      expected = try? ProviderKey.read(variable, from: providers.keys)
    }
    guard request.mode == "subscribe", let expected,
      ConstantTime.equal(Data(request.verifyToken.utf8), Data(expected.utf8))
    else {
      throw RPCError(code: .permissionDenied, message: "hub.mode is not subscribe, or hub.verify_token is not this provider's")
    }
    return .with { $0.challenge = request.challenge }
  }

  /// "sha256=" followed by the hex HMAC-SHA256 of the body keyed with the app secret.
  static func hubSignatureHolds(_ header: String, body: Data, secret: String) -> Bool {
    let expected = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
    let hex = expected.map { String(format: "%02x", $0) }.joined()
    let given = header.lowercased().trimmingCharacters(in: .whitespaces)
    return ConstantTime.equal(Data(given.utf8), Data("sha256=\(hex)".utf8))
  }
}

/// A WhatsApp webhook's body: `{"object": "whatsapp_business_account", "entry": [{"changes":
/// [{"field": "messages", "value": {"statuses": [...], "messages": [...]}}]}]}`.
struct WhatsAppWebhook {
  var statuses: [ProviderEvent] = []
  var messages: [InboundPayload] = []
  /// Statuses that move nothing (sent: Herald knows already; ones it does not know).
  var skipped = 0
  /// The messages the statuses of the last `recentWindow` name: one of them not recorded yet is
  /// retried; an older one naming no message of Herald's is ignored (another app's message).
  var recent: Set<String> = []
  static let recentWindow: TimeInterval = 600
  var notes: [String] = []

  static func parse(_ body: Data) throws(RPCError) -> WhatsAppWebhook {
    func problem(_ field: String, _ text: String) -> RPCError { .field(field, .invalidArgument, "\(field) \(text)") }
    guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
      throw problem("body", "is not a JSON object")
    }
    guard let entries = object["entry"] as? [Any] else { throw problem("entry", "is missing or not an array") }
    var webhook = WhatsAppWebhook()
    for (index, item) in entries.enumerated() {
      guard let entry = item as? [String: Any], let changes = entry["changes"] as? [Any] else {
        throw problem("entry[\(index)].changes", "is missing or not an array")
      }
      for (number, change) in changes.enumerated() {
        let path = "entry[\(index)].changes[\(number)]"
        guard let change = change as? [String: Any], let value = change["value"] as? [String: Any] else {
          throw problem("\(path).value", "is missing or not an object")
        }
        for (position, item) in ((value["statuses"] as? [Any]) ?? []).enumerated() {
          let field = "\(path).value.statuses[\(position)]"
          guard let status = item as? [String: Any], let id = status["id"] as? String, !id.isEmpty,
            let state = status["status"] as? String
          else { throw problem(field, "needs id and status") }
          let errors = (status["errors"] as? [[String: Any]]) ?? []
          let detail =
            errors.first.map { error in
              "\(error["code"].map { "\($0) " } ?? "")\(error["title"] as? String ?? error["message"] as? String ?? "")"
            } ?? ""
          let type: String
          switch state {
          case "sent":
            webhook.skipped += 1
            continue
          case "delivered": type = "delivered"
          // Read receipts are WhatsApp's opens.
          case "read": type = "opened"
          case "failed": type = "failed"
          default:
            // A status this version does not know (WhatsApp adds some): noted, the rest applied.
            webhook.skipped += 1
            webhook.notes.append("\(field).status '\(state)' is not one Herald acts on")
            continue
          }
          guard !id.utf8.contains(0), !detail.utf8.contains(0) else { throw problem(field, "holds NUL") }
          let at = (status["timestamp"] as? String).flatMap(TimeInterval.init) ?? (status["timestamp"] as? TimeInterval)
          if at.map({ $0 >= Date().timeIntervalSince1970 - recentWindow }) ?? true { webhook.recent.insert(id) }
          webhook.statuses.append(
            ProviderEvent(type: type, messageID: nil, providerMessageID: id, bounce: nil, detail: String(detail.prefix(1000))))
        }
        for (position, item) in ((value["messages"] as? [Any]) ?? []).enumerated() {
          let field = "\(path).value.messages[\(position)]"
          guard let message = item as? [String: Any] else { throw problem(field, "is not an object") }
          guard let id = message["id"] as? String, !id.isEmpty, !id.utf8.contains(0) else { throw problem("\(field).id", "is missing") }
          guard let from = message["from"] as? String, from.wholeMatch(of: /\+?[1-9][0-9]{6,14}/) != nil else {
            throw problem("\(field).from", "must be the sender's number (digits, as WhatsApp gives it)")
          }
          let text = Self.text(of: message)
          guard !text.utf8.contains(0) else { throw problem("\(field).text", "holds NUL") }
          webhook.messages.append(
            InboundPayload(
              channel: "whatsapp", providerMessageID: id, from: from.hasPrefix("+") ? from : "+" + from, to: "", text: text))
        }
      }
    }
    return webhook
  }

  /// What the person wrote: a text's body, a button's or list reply's title, else the kind of
  /// message in brackets ("[image]").
  static func text(of message: [String: Any]) -> String {
    if let text = (message["text"] as? [String: Any])?["body"] as? String { return text }
    if let button = (message["button"] as? [String: Any])?["text"] as? String { return button }
    if let interactive = message["interactive"] as? [String: Any] {
      for kind in ["button_reply", "list_reply"] {
        if let title = (interactive[kind] as? [String: Any])?["title"] as? String { return title }
      }
    }
    return "[\(message["type"] as? String ?? "message")]"
  }
}
