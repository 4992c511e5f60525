import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import NIOCore
import SwiftProtobuf

/// A validated provider definition (SPEC §3): which channel, in which order, at what cost, and how
/// to reach it.
package struct ProviderConfig: Sendable, Equatable {
  package enum Kind: Sendable, Equatable {
    case smtp(SMTPSettings)
    case httpSMS(HTTPSMSSettings)
    case webhook(WebhookProviderSettings)
    case apns(APNsSettings)
    case fcm(FCMSettings)
    case whatsapp(WhatsAppSettings)
  }

  package var name: String
  package var channel: String
  package var priority: Int
  package var costCents: Int64
  package var disabled: Bool
  package var sendingIdentity: String?
  package var webhookSecret: String?
  package var kind: Kind
  /// The definition as given, secrets included (what is stored).
  package var definition: Herald_Delivery_V1_Provider

  /// Checks every field; errors name the field, prefixed with `field` (e.g. "providers[2]").
  package init(validating provider: Herald_Delivery_V1_Provider, field prefix: String = "") throws(RPCError) {
    func path(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
    func invalid(_ name: String, _ message: String) -> RPCError { .field(path(name), .invalidArgument, "\(path(name)) \(message)") }

    guard provider.name.wholeMatch(of: /[a-z0-9][a-z0-9-]{0,62}/) != nil else {
      throw invalid("name", "must be 1 to 63 lower-case letters, digits or dashes, starting with a letter or digit")
    }
    guard let channel = DeliveryService.channelName(provider.channel) else {
      throw invalid("channel", "must be email, sms, push or whatsapp")
    }
    guard provider.costCents >= 0 else { throw invalid("cost_cents", "must not be negative") }
    // A value that goes into an SMTP command or an HTTP header: one line.
    func oneLine(_ text: String, _ name: String) throws(RPCError) {
      if text.containsControlCharacter { throw invalid(name, "must be one line without control characters") }
    }
    func url(_ text: String, _ name: String) throws(RPCError) -> String {
      try oneLine(text, name)
      guard let parsed = URL(string: text), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
        parsed.host?.isEmpty == false
      else { throw invalid(name, "'\(text)' is not an http(s) URL") }
      return text
    }
    func optional(_ text: String) -> String? { text.isEmpty ? nil : text }
    // A push or WhatsApp API's base URL (no query; no trailing "/"), or its default when empty.
    func baseURL(_ text: String, _ name: String, default standard: String) throws(RPCError) -> String {
      guard !text.isEmpty else { return standard }
      let given = try url(text, name)
      guard URL(string: given)?.query == nil else { throw invalid(name, "must have no query") }
      return given.hasSuffix("/") ? String(given.dropLast()) : given
    }
    // Names a variable of the delivery process's environment that holds a key (never stored).
    func variable(_ text: String, _ name: String) throws(RPCError) -> String {
      guard ProviderKey.isVariableName(text) else {
        throw invalid(
          name,
          "must name an environment variable HERALD_PROVIDER_... (upper-case letters, digits, underscores) that holds the key, got '\(text)'"
        )
      }
      return text
    }
    func pem(_ text: String, _ name: String) throws(RPCError) -> String? {
      guard !text.isEmpty else { return nil }
      guard text.contains("-----BEGIN CERTIFICATE-----"), ProviderTLS.configuration(trusting: text) != nil else {
        throw invalid(name, "is not a PEM certificate that parses")
      }
      return text
    }

    let kind: Kind
    switch provider.settings {
    case .smtp(let smtp):
      guard provider.kind == .smtp || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are smtp")
      }
      guard channel == "email" else { throw invalid("channel", "must be email for an SMTP provider") }
      guard !smtp.host.isEmpty else { throw invalid("smtp.host", "is empty") }
      try oneLine(smtp.host, "smtp.host")
      let port = smtp.port == 0 ? 587 : Int(smtp.port)
      guard (1...65535).contains(port) else { throw invalid("smtp.port", "must be from 1 to 65535") }
      try oneLine(smtp.username, "smtp.username")
      try oneLine(smtp.fromAddress, "smtp.from_address")
      guard smtp.fromAddress.wholeMatch(of: /[^@\s<>]+@[^@\s<>]+/) != nil else {
        throw invalid("smtp.from_address", "'\(smtp.fromAddress)' is not an e-mail address")
      }
      // The envelope sender in ASCII, its domain in A-labels: every server takes it.
      let from: MailAddress
      do {
        from = try MailAddress(smtp.fromAddress)
      } catch {
        throw invalid("smtp.from_address", "'\(smtp.fromAddress)': \(error)")
      }
      guard !from.needsSMTPUTF8 else {
        throw invalid("smtp.from_address", "'\(smtp.fromAddress)' must be ASCII before the @ (a server without SMTPUTF8 refuses it)")
      }
      try oneLine(smtp.fromName, "smtp.from_name")
      guard smtp.fromName.count <= 200 else { throw invalid("smtp.from_name", "must be at most 200 characters") }
      try oneLine(smtp.replyTo, "smtp.reply_to")
      guard smtp.replyTo.isEmpty || smtp.replyTo.wholeMatch(of: /[^@\s<>]+@[^@\s<>]+/) != nil else {
        throw invalid("smtp.reply_to", "'\(smtp.replyTo)' is not an e-mail address")
      }
      try oneLine(smtp.heloName, "smtp.helo_name")
      let inboundDomain = smtp.inboundDomain.lowercased()
      guard inboundDomain.isEmpty || inboundDomain.wholeMatch(of: /([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}/) != nil else {
        throw invalid("smtp.inbound_domain", "'\(smtp.inboundDomain)' is not a domain name such as reply.example.com")
      }
      guard (0...64).contains(smtp.maxConnections) else { throw invalid("smtp.max_connections", "must be from 0 to 64") }
      if !smtp.trustedCaPem.isEmpty, !smtp.trustedCaPem.contains("-----BEGIN CERTIFICATE-----") {
        throw invalid("smtp.trusted_ca_pem", "is not a PEM certificate")
      }
      let tls: SMTPSettings.TLS =
        switch smtp.tls {
        case .starttlsRequired: .required
        case .none: .none
        default: .ifOffered
        }
      kind = .smtp(
        SMTPSettings(
          host: smtp.host, port: port, username: optional(smtp.username), password: optional(smtp.password), tls: tls,
          fromAddress: from.wire, fromName: smtp.fromName, replyTo: optional(smtp.replyTo),
          heloName: optional(smtp.heloName) ?? "localhost",
          maxConnections: smtp.maxConnections == 0 ? 4 : Int(smtp.maxConnections),
          trustedCAPEM: optional(smtp.trustedCaPem), inboundDomain: optional(inboundDomain)))
    case .httpSms(let sms):
      guard provider.kind == .httpSms || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are http_sms")
      }
      guard channel == "sms" || channel == "whatsapp" else { throw invalid("channel", "must be sms or whatsapp for an HTTP SMS provider") }
      guard !sms.from.isEmpty else { throw invalid("http_sms.from", "is empty") }
      try oneLine(sms.from, "http_sms.from")
      try oneLine(sms.username, "http_sms.username")
      try oneLine(sms.bearerToken, "http_sms.bearer_token")
      guard sms.bearerToken.isEmpty || sms.username.isEmpty else {
        throw invalid("http_sms.bearer_token", "and http_sms.username are both set; use one way of signing in")
      }
      kind = .httpSMS(
        HTTPSMSSettings(
          url: try url(sms.url, "http_sms.url"), username: optional(sms.username), password: optional(sms.password),
          bearerToken: optional(sms.bearerToken), from: sms.from, formEncoded: sms.formEncoded,
          messageIDField: optional(sms.messageIDField)))
    case .webhook(let webhook):
      guard provider.kind == .webhook || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are webhook")
      }
      kind = .webhook(
        WebhookProviderSettings(url: try url(webhook.url, "webhook.url"), signingSecret: optional(webhook.signingSecret)))
    case .apns(let apns):
      guard provider.kind == .apns || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are apns")
      }
      guard channel == "push" else { throw invalid("channel", "must be push for an APNs provider") }
      guard apns.teamID.wholeMatch(of: /[A-Z0-9]{10}/) != nil else {
        throw invalid("apns.team_id", "must be the 10-character Team ID of the Apple developer account")
      }
      guard apns.keyID.wholeMatch(of: /[A-Z0-9]{10}/) != nil else {
        throw invalid("apns.key_id", "must be the 10-character Key ID of the APNs key")
      }
      guard apns.topic.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9.-]{0,254}/) != nil else {
        throw invalid("apns.topic", "must be the app's bundle id, e.g. com.example.shop")
      }
      kind = .apns(
        APNsSettings(
          url: try baseURL(apns.url, "apns.url", default: APNsSettings.productionURL), teamID: apns.teamID, keyID: apns.keyID,
          privateKeyVariable: try variable(apns.privateKeyVariable, "apns.private_key_variable"), topic: apns.topic,
          trustedCAPEM: try pem(apns.trustedCaPem, "apns.trusted_ca_pem")))
    case .fcm(let fcm):
      guard provider.kind == .fcm || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are fcm")
      }
      guard channel == "push" else { throw invalid("channel", "must be push for an FCM provider") }
      guard fcm.projectID.wholeMatch(of: /[a-z][a-z0-9-]{4,61}[a-z0-9]/) != nil else {
        throw invalid("fcm.project_id", "must be the Firebase project id, e.g. shop-app-4711")
      }
      kind = .fcm(
        FCMSettings(
          projectID: fcm.projectID, serviceAccountVariable: try variable(fcm.serviceAccountVariable, "fcm.service_account_variable"),
          url: try baseURL(fcm.url, "fcm.url", default: FCMSettings.productionURL),
          trustedCAPEM: try pem(fcm.trustedCaPem, "fcm.trusted_ca_pem")))
    case .whatsapp(let whatsapp):
      guard provider.kind == .whatsapp || provider.kind == .unspecified else {
        throw invalid("kind", "is \(provider.kind) but the settings are whatsapp")
      }
      guard channel == "whatsapp" else { throw invalid("channel", "must be whatsapp for a WhatsApp provider") }
      guard whatsapp.phoneNumberID.wholeMatch(of: /[0-9]{1,30}/) != nil else {
        throw invalid("whatsapp.phone_number_id", "must be the number's id in WhatsApp Manager (digits)")
      }
      guard whatsapp.phoneNumber.wholeMatch(of: /\+[1-9][0-9]{6,14}/) != nil else {
        throw invalid("whatsapp.phone_number", "must be the sending number in E.164 form, e.g. +14155550100")
      }
      guard provider.webhookSecret.isEmpty else {
        throw invalid("webhook_secret", "is not used by a WhatsApp provider: its webhooks are checked with app_secret_variable")
      }
      kind = .whatsapp(
        WhatsAppSettings(
          url: try baseURL(whatsapp.url, "whatsapp.url", default: WhatsAppSettings.productionURL),
          phoneNumberID: whatsapp.phoneNumberID, phoneNumber: whatsapp.phoneNumber,
          accessTokenVariable: try variable(whatsapp.accessTokenVariable, "whatsapp.access_token_variable"),
          appSecretVariable: try variable(whatsapp.appSecretVariable, "whatsapp.app_secret_variable"),
          verifyTokenVariable: whatsapp.verifyTokenVariable.isEmpty
            ? nil : try variable(whatsapp.verifyTokenVariable, "whatsapp.verify_token_variable"),
          trustedCAPEM: try pem(whatsapp.trustedCaPem, "whatsapp.trusted_ca_pem")))
    case nil:
      throw invalid("settings", "are missing: give one of smtp, http_sms, webhook, apns, fcm or whatsapp")
    }

    if provider.hasQuietHours {
      guard channel == "sms" else { throw invalid("quiet_hours", "apply to SMS providers only") }
      guard QuietWindow(provider.quietHours) != nil else {
        throw invalid("quiet_hours", "must have start and end as HH:MM (end up to 24:00)")
      }
    }
    if provider.hasSmsKeywords {
      guard channel == "sms" else { throw invalid("sms_keywords", "apply to SMS providers only") }
      let keywords = provider.smsKeywords
      for (name, value, limit) in [
        ("brand", keywords.brand, 60), ("support", keywords.support, 100), ("frequency", keywords.frequency, 100),
      ] {
        try oneLine(value, "sms_keywords.\(name)")
        guard value.count <= limit else { throw invalid("sms_keywords.\(name)", "must be at most \(limit) characters") }
      }
      for (name, value) in [("stop_text", keywords.stopText), ("start_text", keywords.startText), ("help_text", keywords.helpText)] {
        guard value.count <= 320 else { throw invalid("sms_keywords.\(name)", "must be at most 320 characters") }
        guard !value.utf8.contains(0) else { throw invalid("sms_keywords.\(name)", "must not hold NUL") }
      }
      // A keyword in two lists means what the first of stop, start, help says (a STOP is never
      // lost to a START).
      for (name, list) in [
        ("stop_keywords", keywords.stopKeywords), ("start_keywords", keywords.startKeywords), ("help_keywords", keywords.helpKeywords),
      ] {
        guard list.count <= 20 else { throw invalid("sms_keywords.\(name)", "holds \(list.count); at most 20") }
        for (index, keyword) in list.enumerated() {
          guard keyword.wholeMatch(of: /[A-Za-z0-9 ]{1,30}/) != nil, !SMSKeywords.normalized(keyword).isEmpty else {
            throw invalid("sms_keywords.\(name)[\(index)]", "'\(keyword)' must be 1 to 30 letters, digits or spaces")
          }
        }
      }
    }

    self.name = provider.name
    self.channel = channel
    self.priority = Int(provider.priority)
    self.costCents = provider.costCents
    self.disabled = provider.disabled
    self.sendingIdentity = optional(provider.sendingIdentity)
    self.webhookSecret = optional(provider.webhookSecret)
    self.kind = kind
    var definition = provider
    definition.clearStatus()
    definition.kind =
      switch kind {
      case .smtp: .smtp
      case .httpSMS: .httpSms
      case .webhook: .webhook
      case .apns: .apns
      case .fcm: .fcm
      case .whatsapp: .whatsapp
      }
    self.definition = definition
  }

  /// Whether a send that may have reached the provider (cut off mid-send, or its worker stopped)
  /// can be sent again: the HTTP kinds carry the message's Idempotency-Key, so the provider drops
  /// a second copy; SMTP only when its settings allow it (`resend_unconfirmed`: the copy keeps
  /// its Message-ID).
  package var resendsUnconfirmed: Bool {
    switch kind {
    case .httpSMS, .webhook: true
    case .smtp: definition.smtp.resendUnconfirmed
    // The push services and WhatsApp take no idempotency key: a second copy would be shown twice.
    case .apns, .fcm, .whatsapp: false
    }
  }

  /// The environment variables its keys are read from, with the fields that name them (the
  /// field also says what the key is for: a variable serves one purpose only).
  package var keyVariables: [(field: String, variable: String)] {
    switch kind {
    case .apns(let settings): [("apns.private_key_variable", settings.privateKeyVariable)]
    case .fcm(let settings): [("fcm.service_account_variable", settings.serviceAccountVariable)]
    case .whatsapp(let settings):
      [
        ("whatsapp.access_token_variable", settings.accessTokenVariable),
        ("whatsapp.app_secret_variable", settings.appSecretVariable),
      ] + (settings.verifyTokenVariable.map { [("whatsapp.verify_token_variable", $0)] } ?? [])
    case .smtp, .httpSMS, .webhook: []
    }
  }

  /// Why this provider may not use its variables next to `others`: one of them is another
  /// provider's for another purpose (an app secret named as an access token would be sent to
  /// the provider's URL); nil when none is. The field and the reason.
  package func keyVariableConflict(with others: [ProviderConfig]) -> (field: String, message: String)? {
    for (field, variable) in keyVariables {
      let purpose = field.split(separator: ".").last.map(String.init) ?? field
      for other in others where other.name != name {
        for (otherField, otherVariable) in other.keyVariables where otherVariable == variable {
          let otherPurpose = otherField.split(separator: ".").last.map(String.init) ?? otherField
          if otherPurpose != purpose {
            return (field, "\(field): \(variable) is provider '\(other.name)'s \(otherField); a variable holds one kind of key")
          }
        }
      }
      for (otherField, otherVariable) in keyVariables where otherVariable == variable && otherField != field {
        return (field, "\(field) and \(otherField) both name \(variable); a variable holds one kind of key")
      }
    }
    return nil
  }

  /// Whether it sends push notifications of `platform` (nil: not a push route): an APNs or FCM
  /// provider only its own platform's.
  package func sendsPlatform(_ platform: String?) -> Bool {
    switch kind {
    case .apns: platform == "apns"
    case .fcm: platform == "fcm"
    default: true
    }
  }

  /// The route a message takes: its channel, and for push its platform.
  package static func route(of message: OutgoingMessage) -> String {
    if message.channel == "push", let platform = message.payload?.push?.platform { return "push/\(platform)" }
    return message.channel
  }

  /// The domain it sends as (an SMTP provider's From domain, lower-cased); nil for the others.
  package var sendingDomain: String? {
    guard case .smtp(let settings) = kind else { return nil }
    return MailAddress.domain(of: settings.fromAddress)
  }

  /// What answers show in place of a secret that is set. Given back as a secret's value (a
  /// provider that was listed, put back), it stands for the stored secret: `keepingStoredSecrets`.
  package static let redactionMarker = "<redacted>"

  /// The definition with secrets blanked, for answers.
  package var redacted: Herald_Delivery_V1_Provider {
    let marker = Self.redactionMarker
    return Self.mapSecrets(of: definition, stored: nil) { (value, _, _) throws(Never) in value.isEmpty ? "" : marker }
  }

  /// This provider with every secret given as exactly the redaction marker replaced by the same
  /// secret of `stored` (the definition stored under its name), so that a provider that was
  /// listed can be put back as it is. FAILED_PRECONDITION naming the field (prefixed with
  /// `field`) when there is no such secret to keep: no stored provider, settings of another kind,
  /// or the secret not set (the request is well-formed; what is stored does not allow it).
  package func keepingStoredSecrets(of stored: Herald_Delivery_V1_Provider?, field prefix: String = "") throws(RPCError) -> ProviderConfig {
    let (marker, name) = (Self.redactionMarker, self.name)
    let provider = try Self.mapSecrets(of: definition, stored: stored) { given, storedValue, field throws(RPCError) in
      guard given == marker else { return given }
      guard let storedValue, !storedValue.isEmpty else {
        let path = prefix.isEmpty ? field : "\(prefix).\(field)"
        throw .field(
          path, .failedPrecondition,
          "\(path) is \"\(marker)\", which keeps the stored secret, but provider '\(name)' has none stored to keep")
      }
      return storedValue
    }
    guard provider != definition else { return self }
    return try ProviderConfig(validating: provider, field: prefix)
  }

  /// `provider` with each secret (`webhook_secret`, `smtp.password`, `http_sms.password`,
  /// `http_sms.bearer_token`, `webhook.signing_secret`) replaced by `transform(value, the same
  /// secret of stored (nil when stored has none or settings of another kind), the field's name)`.
  static func mapSecrets<Failure: Error>(
    of provider: Herald_Delivery_V1_Provider, stored: Herald_Delivery_V1_Provider?,
    _ transform: (String, String?, String) throws(Failure) -> String
  ) throws(Failure) -> Herald_Delivery_V1_Provider {
    var provider = provider
    provider.webhookSecret = try transform(provider.webhookSecret, stored?.webhookSecret, "webhook_secret")
    switch provider.settings {
    case .smtp(var smtp):
      let old: Herald_Delivery_V1_SmtpSettings? = if case .smtp(let old) = stored?.settings { old } else { nil }
      smtp.password = try transform(smtp.password, old?.password, "smtp.password")
      provider.smtp = smtp
    case .httpSms(var sms):
      let old: Herald_Delivery_V1_HttpSmsSettings? = if case .httpSms(let old) = stored?.settings { old } else { nil }
      sms.password = try transform(sms.password, old?.password, "http_sms.password")
      sms.bearerToken = try transform(sms.bearerToken, old?.bearerToken, "http_sms.bearer_token")
      provider.httpSms = sms
    case .webhook(var webhook):
      let old: Herald_Delivery_V1_WebhookSettings? = if case .webhook(let old) = stored?.settings { old } else { nil }
      webhook.signingSecret = try transform(webhook.signingSecret, old?.signingSecret, "webhook.signing_secret")
      provider.webhook = webhook
    // Their keys stay in the process's environment: the definition names variables only.
    case .apns, .fcm, .whatsapp, nil: break
    }
    return provider
  }

  /// Reads `HERALD_DELIVERY_PROVIDERS_FILE`: JSON in the protobuf mapping of `ProvidersFile`.
  package static func loadFile(_ path: String) throws(ConfigFileError) -> (providers: [ProviderConfig], schedules: [WarmupScheduleConfig]) {
    let kind = "the providers file"
    let file = try ConfigFile.load(Herald_Delivery_V1_ProvidersFile.self, path: path, kind: kind)
    var seen = Set<String>()
    var earlier: [ProviderConfig] = []
    let providers = try ConfigFile.entries(file.providers, path: path, kind: kind) { (index, provider) throws(RPCError) in
      let config = try ProviderConfig(validating: provider, field: "providers[\(index)]")
      guard seen.insert(config.name).inserted else {
        throw RPCError.field("providers[\(index)].name", .invalidArgument, "providers[\(index)].name '\(config.name)' appears twice")
      }
      if let conflict = config.keyVariableConflict(with: earlier) {
        throw RPCError.field("providers[\(index)].\(conflict.field)", .invalidArgument, "providers[\(index)].\(conflict.message)")
      }
      earlier.append(config)
      return config
    }
    let schedules = try ConfigFile.entries(file.warmupSchedules, path: path, kind: kind) { (index, schedule) throws(RPCError) in
      try WarmupScheduleConfig(validating: schedule, field: "warmup_schedules[\(index)]")
    }
    return (providers, schedules)
  }
}
