import Foundation
import HeraldCore
import HeraldServerKit

/// How the delivery workers behave; from `HERALD_DELIVERY_*` variables.
package struct DeliverySettings: Sendable, Equatable {
  /// Worker loops per process (each claims its own batches); 0 turns sending off.
  package var workers = 4
  package var batchSize = 200
  /// Sends in flight at once per loop.
  package var concurrency = 32
  package var lease: Duration = .seconds(60)
  package var maxAttempts = 8
  package var retryBase: Duration = .seconds(2)
  package var retryCap: Duration = .seconds(3600)
  package var timeToLive: Duration = .seconds(72 * 3600)
  /// Send again a message whose earlier send was cut off after it may have reached the provider.
  package var resendAmbiguous = false
  package var idle: Duration = .milliseconds(200)
  package var refreshInterval: Duration = .seconds(5)
  package var breaker = BreakerPolicy()
  package var providersFile: String?
  /// Seals stored secrets (DKIM private keys): HERALD_SECRETS_KEY.
  package var secrets = SecretBox.none
  /// How long DKIM signatures are valid (`x=`): HERALD_DKIM_SIGNATURE_LIFETIME; unset: no expiry.
  package var dkimSignatureLifetime: Duration?
  /// The sending-domain guard (`DomainGuard`): HERALD_DELIVERY_GUARD_COMPLAINT_RATE, _BOUNCE_RATE,
  /// _MIN_SENT, over the last HERALD_DELIVERY_GUARD_WINDOW, judged every HERALD_DELIVERY_GUARD_INTERVAL.
  package var domainGuard = DeliverabilityThresholds()
  package var guardWindow: Duration = .seconds(24 * 3600)
  package var guardInterval: Duration = .seconds(60)
  /// When SMS may be delivered, in the recipient's local time (SPEC §11): HERALD_SMS_QUIET_HOURS,
  /// "08:00-21:00" by default. Campaigns, messages and providers may narrow it.
  package var smsQuietHours = QuietWindow.standard
  /// Where the push and WhatsApp providers' keys are read (the variables their settings name,
  /// `HERALD_PROVIDER_*`): the process's environment; tests give their own.
  package var providerKeys = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("HERALD_PROVIDER_") }

  package init() {}

  package static func load(_ settings: Settings) throws -> DeliverySettings {
    var result = DeliverySettings()
    result.workers = try settings.int("HERALD_DELIVERY_WORKERS", default: result.workers, range: 0...64)
    result.batchSize = try settings.int("HERALD_DELIVERY_BATCH_SIZE", default: result.batchSize, range: 1...1000)
    result.concurrency = try settings.int("HERALD_DELIVERY_CONCURRENCY", default: result.concurrency, range: 1...1024)
    result.lease = try settings.duration("HERALD_DELIVERY_LEASE", default: result.lease)
    result.maxAttempts = try settings.int("HERALD_DELIVERY_MAX_ATTEMPTS", default: result.maxAttempts, range: 1...100)
    result.retryBase = try settings.duration("HERALD_DELIVERY_RETRY_BASE", default: result.retryBase)
    result.timeToLive = try settings.duration("HERALD_DELIVERY_MESSAGE_TTL", default: result.timeToLive)
    result.resendAmbiguous = try settings.bool("HERALD_DELIVERY_RESEND_AMBIGUOUS", default: false)
    result.breaker.openFor = try settings.duration("HERALD_DELIVERY_BREAKER_OPEN_FOR", default: result.breaker.openFor)
    result.providersFile = settings.optionalString("HERALD_DELIVERY_PROVIDERS_FILE")
    result.secrets = try SecretBox(settings.optionalString(SecretBox.variable))
    if let text = settings.optionalString("HERALD_DKIM_SIGNATURE_LIFETIME") {
      let lifetime = try settings.duration("HERALD_DKIM_SIGNATURE_LIFETIME", default: .zero)
      // x= counts whole seconds and must come after t=.
      guard lifetime >= .seconds(1) else {
        throw ConfigurationError.malformed(
          variable: "HERALD_DKIM_SIGNATURE_LIFETIME", value: text, expected: "a duration of at least 1s, such as 168h")
      }
      result.dkimSignatureLifetime = lifetime
    }
    result.domainGuard = try DeliverabilityThresholds.load(settings, prefix: "HERALD_DELIVERY_GUARD")
    result.guardWindow = try settings.duration("HERALD_DELIVERY_GUARD_WINDOW", default: result.guardWindow)
    result.guardInterval = try settings.duration("HERALD_DELIVERY_GUARD_INTERVAL", default: result.guardInterval)
    if let text = settings.optionalString("HERALD_SMS_QUIET_HOURS") {
      guard let window = QuietWindow(text: text) else {
        throw ConfigurationError.malformed(
          variable: "HERALD_SMS_QUIET_HOURS", value: "'\(text)'",
          expected: "a window of local time such as 08:00-21:00 (an end before the start runs past midnight)")
      }
      result.smsQuietHours = window
    }
    // A bad providers file stops start-up here, naming the file and the field.
    if let path = result.providersFile { _ = try ProviderConfig.loadFile(path) }
    return result
  }

  /// Exponential backoff with jitter: base·2^(attempt-1), capped, then a random 50–100 % of it.
  package func backoff(afterAttempt attempt: Int) -> Duration {
    let exponent = min(max(attempt - 1, 0), 30)
    let full = min(retryBase * (1 << exponent), retryCap)
    return full * Double.random(in: 0.5...1.0)
  }
}
