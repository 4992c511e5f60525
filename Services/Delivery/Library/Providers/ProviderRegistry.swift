import AsyncHTTPClient
import Foundation
import HeraldServerKit
import NIOCore
import Synchronization

/// The live providers of this process: built from the stored definitions (refreshed, so a change
/// through the API reaches every replica), each with its circuit breaker, kept across refreshes
/// while its definition is unchanged.
package final class ProviderRegistry: Sendable {
  package struct Entry: Sendable {
    package var config: ProviderConfig
    package var provider: any DeliveryProvider
    package var breaker: CircuitBreaker
  }

  package typealias Factory = @Sendable (ProviderConfig, HTTPClient) -> any DeliveryProvider

  let store: DeliveryStore
  let policy: BreakerPolicy
  let factory: Factory
  let http: HTTPClient
  /// Seals and opens stored secrets (HERALD_SECRETS_KEY).
  package let secrets: SecretBox
  /// The DKIM keys the SMTP providers sign with, reloaded with the providers.
  package let dkim: DKIMKeyring
  /// The `HERALD_PROVIDER_*` variables the push and WhatsApp providers read their keys from.
  package let keys: [String: String]
  private let entries = Mutex<[String: Entry]>([:])
  /// Providers this process had and no longer has (deleted), so that their breaker gauge can say
  /// closed instead of keeping its last value.
  private let gone = Mutex<Set<String>>([])
  /// Sending domains the deliverability guard holds: their providers send nothing.
  private let heldDomains = Mutex<Set<String>>([])

  package init(
    store: DeliveryStore, policy: BreakerPolicy = BreakerPolicy(), secrets: SecretBox = .none,
    dkimSignatureLifetime: Duration? = nil, keys: [String: String] = [:], factory: Factory? = nil
  ) {
    let dkim = DKIMKeyring(signatureLifetime: dkimSignatureLifetime)
    self.keys = keys
    self.store = store
    self.policy = policy
    self.secrets = secrets
    self.dkim = dkim
    let addressKeys = secrets.derivedKeys(purpose: AddressToken.purpose)
    self.factory =
      factory ?? { config, http in Self.makeProvider(config, http: http, dkim: dkim, addressKeys: addressKeys, keys: keys) }
    self.http = Self.sharedHTTPClient
  }

  /// One HTTP client for every provider of the process (it pools connections per host), with a
  /// short connect timeout so a provider that is down fails over quickly. Never shut down, like
  /// `HTTPClient.shared`.
  static let sharedHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.timeout = .init(connect: .seconds(2), read: .seconds(15))
    configuration.redirectConfiguration = .disallow
    // Up to 32 keep-alive connections per provider host (the default 8 caps a worker's sends in flight).
    configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
  }()

  package static func makeProvider(
    _ config: ProviderConfig, http: HTTPClient, dkim: DKIMKeyring, addressKeys: [(id: String, key: Data)] = [],
    keys: [String: String] = [:]
  ) -> any DeliveryProvider {
    switch config.kind {
    case .smtp(let settings): SMTPProvider(settings: settings, dkim: dkim, addressKeys: addressKeys)
    case .httpSMS(let settings): HTTPSMSProvider(name: config.name, settings: settings, client: http)
    case .webhook(let settings): WebhookProvider(name: config.name, settings: settings, client: http)
    case .apns(let settings): APNsProvider(name: config.name, settings: settings, client: http, keys: keys)
    case .fcm(let settings): FCMProvider(name: config.name, settings: settings, client: http, keys: keys)
    case .whatsapp(let settings): WhatsAppProvider(name: config.name, settings: settings, client: http, keys: keys)
    }
  }

  /// Reloads the DKIM keys.
  package func refreshDKIMKeys() async throws {
    dkim.reload(try await store.dkimKeys(), secrets: secrets, logger: store.logger)
  }

  /// Reloads the definitions, the DKIM keys and the held sending domains; providers whose
  /// definition changed are rebuilt (their breaker too).
  package func refresh() async throws {
    try await refreshDKIMKeys()
    let held = Set(try await store.heldDomains().map(\.domain))
    heldDomains.withLock { $0 = held }
    let configs = try await store.providers(opening: secrets)
    var retired: [any DeliveryProvider] = []
    var removed: Set<String> = []
    entries.withLock { entries in
      var next: [String: Entry] = [:]
      for config in configs {
        if let existing = entries[config.name], existing.config == config {
          next[config.name] = existing
        } else {
          if let existing = entries[config.name] { retired.append(existing.provider) }
          next[config.name] = Entry(config: config, provider: factory(config, http), breaker: CircuitBreaker(policy: policy))
        }
      }
      for (name, entry) in entries where next[name] == nil {
        retired.append(entry.provider)
        removed.insert(name)
      }
      entries = next
    }
    let present = Set(configs.map(\.name))
    gone.withLock { gone in gone = gone.union(removed).subtracting(present) }
    for provider in retired { await provider.shutdown() }
  }

  /// Enabled providers of a route (`ProviderConfig.route(of:)`: a channel, or push and its
  /// platform) in the order they are tried: priority, then name. A provider whose sending
  /// domain the guard holds is left out.
  package func candidates(for route: String) -> [Entry] {
    let held = heldDomains.withLock { $0 }
    let parts = route.split(separator: "/", maxSplits: 1).map(String.init)
    let channel = parts[0]
    let platform = parts.count > 1 ? parts[1] : nil
    return entries.withLock { entries in
      entries.values.filter {
        $0.config.channel == channel && Self.sends($0.config, held: held) && $0.config.sendsPlatform(platform)
      }
      .sorted { ($0.config.priority, $0.config.name) < ($1.config.priority, $1.config.name) }
    }
  }

  /// Channels with at least one provider that sends: only their messages are claimed (the others
  /// wait in the queue).
  package var channels: [String] {
    let held = heldDomains.withLock { $0 }
    return entries.withLock { entries in
      Set(entries.values.filter { Self.sends($0.config, held: held) }.map(\.config.channel)).sorted()
    }
  }

  static func sends(_ config: ProviderConfig, held: Set<String>) -> Bool {
    !config.disabled && !(config.sendingDomain.map(held.contains) ?? false)
  }

  package func entry(named name: String) -> Entry? {
    entries.withLock { $0[name] }
  }

  package var all: [Entry] {
    entries.withLock { entries in
      entries.values.sorted {
        ($0.config.channel, $0.config.priority, $0.config.name) < ($1.config.channel, $1.config.priority, $1.config.name)
      }
    }
  }

  /// Names of providers this process had and has no longer.
  package var removed: Set<String> {
    gone.withLock { $0 }
  }

  package func shutdown() async {
    let providers = entries.withLock { entries in
      defer { entries.removeAll() }
      return entries.values.map(\.provider)
    }
    for provider in providers { await provider.shutdown() }
  }
}
