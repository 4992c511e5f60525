import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Providers (SPEC §3): listed with this replica's breaker state, put and deleted; every change
/// reaches the other replicas through the table within their refresh interval.
extension DeliveryService {
  package func listProviders(
    request: Herald_Delivery_V1_ListProvidersRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListProvidersResponse {
    var response = Herald_Delivery_V1_ListProvidersResponse()
    response.providers = providers.all.map { entry in
      var provider = entry.config.redacted
      provider.status = Self.status(entry.breaker.snapshot())
      return provider
    }
    return response
  }

  static func status(_ snapshot: CircuitBreaker.Snapshot) -> Herald_Delivery_V1_ProviderStatus {
    var status = Herald_Delivery_V1_ProviderStatus()
    status.breakerState = snapshot.state.rawValue
    status.errorRate = snapshot.errorRate
    status.attemptsInWindow = Int64(snapshot.attemptsInWindow)
    status.latencyMsAverage = snapshot.averageLatencyMilliseconds
    status.lastError = snapshot.lastError ?? ""
    if let opened = snapshot.openedAt { status.openedAt = Google_Protobuf_Timestamp(date: opened) }
    status.sent = snapshot.sent
    status.failed = snapshot.failed
    return status
  }

  /// A secret given as exactly the redaction marker ("<redacted>", what ListProviders shows) keeps
  /// the secret stored under the provider's name, so that a listed provider can be put back as it
  /// is; INVALID_ARGUMENT naming the field when there is none to keep.
  package func putProvider(
    request: Herald_Delivery_V1_Provider, context: ServerContext
  ) async throws -> Herald_Delivery_V1_Provider {
    let config = try ProviderConfig(validating: request)
    // Keys stay out of the database: the variables that hold them must be set where delivery runs.
    for (field, variable) in config.keyVariables where providers.keys[variable]?.isEmpty ?? true {
      throw RPCError.field(
        field, .failedPrecondition,
        "\(field): \(variable) is not set in the delivery process's environment (keys never enter the database: set it where delivery runs, then put the provider again)"
      )
    }
    if let conflict = config.keyVariableConflict(with: providers.all.map(\.config)) {
      throw RPCError.field(conflict.field, .invalidArgument, conflict.message)
    }
    let stored = try await store.putProvider(named: config.name, sealingWith: providers.secrets) { stored in
      try config.keepingStoredSecrets(of: stored)
    }
    try await providers.refresh()
    return stored.redacted
  }

  package func sealSecrets(
    request: Herald_Delivery_V1_SealSecretsRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_SealSecretsResponse {
    let secrets = providers.secrets
    guard secrets.canSeal else {
      throw RPCError(code: .failedPrecondition, message: "\(SecretBox.variable) is not set: there is no key to seal secrets with")
    }
    let sealing = try await store.sealSecrets(secrets)
    try await providers.refresh()
    var response = Herald_Delivery_V1_SealSecretsResponse()
    response.providersSealed = Int32(sealing.providers)
    response.dkimKeysSealed = Int32(sealing.dkimKeys)
    response.providersUnchanged = Int32(sealing.unchanged)
    response.failures = sealing.failures
    return response
  }

  package func deleteProvider(
    request: Herald_Delivery_V1_DeleteProviderRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_DeleteProviderResponse {
    guard try await store.deleteProvider(named: request.name) else {
      throw RPCError.field("name", .notFound, "no provider is named '\(request.name)'")
    }
    try await providers.refresh()
    return Herald_Delivery_V1_DeleteProviderResponse()
  }
}
