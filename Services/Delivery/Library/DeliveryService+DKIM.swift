import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// DKIM signing keys per sending domain: created here (the private key sealed with
/// HERALD_SECRETS_KEY, never answered), listed with the DNS record to publish, deleted.
extension DeliveryService {
  package func createDkimKey(
    request: Herald_Delivery_V1_CreateDkimKeyRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_DkimKey {
    let domain = try Self.dkimDomain(request.domain)
    let selector = try Self.dkimSelector(request.selector)
    let algorithm: DKIMKey.Algorithm
    switch request.algorithm {
    case .rsaSha256: algorithm = .rsaSHA256
    case .ed25519Sha256: algorithm = .ed25519SHA256
    default:
      throw RPCError.field(
        "algorithm", .invalidArgument, "algorithm must be DKIM_ALGORITHM_RSA_SHA256 or DKIM_ALGORITHM_ED25519_SHA256")
    }
    let secrets = providers.secrets
    guard secrets.canSeal else {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(SecretBox.variable) is not set: DKIM private keys are stored only encrypted (see docs/operations.md)")
    }
    let (key, privateKey) = try DKIMKey.generate(domain: domain, selector: selector, algorithm: algorithm)
    guard
      let createdAt = try await store.createDKIMKey(
        domain: domain, selector: selector, algorithm: algorithm, sealedPrivateKey: try secrets.seal(privateKey),
        publicKey: key.publicKey)
    else {
      throw RPCError.field(
        "selector", .alreadyExists, "\(domain) already has a key under selector '\(selector)': choose another selector to rotate")
    }
    try await providers.refreshDKIMKeys()
    return Self.dkimKey(
      StoredDKIMKey(
        domain: domain, selector: selector, algorithm: algorithm, sealedPrivateKey: "", publicKey: key.publicKey,
        createdAt: createdAt))
  }

  package func listDkimKeys(
    request: Herald_Delivery_V1_ListDkimKeysRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_ListDkimKeysResponse {
    var response = Herald_Delivery_V1_ListDkimKeysResponse()
    let domain = request.domain.isEmpty ? nil : try Self.dkimDomain(request.domain)
    response.keys = try await store.dkimKeys(domain: domain).map(Self.dkimKey)
    return response
  }

  package func deleteDkimKey(
    request: Herald_Delivery_V1_DeleteDkimKeyRequest, context: ServerContext
  ) async throws -> Herald_Delivery_V1_DeleteDkimKeyResponse {
    let domain = try Self.dkimDomain(request.domain)
    let selector = try Self.dkimSelector(request.selector)
    guard try await store.deleteDKIMKey(domain: domain, selector: selector) else {
      throw RPCError(code: .notFound, message: "\(domain) has no DKIM key under selector '\(selector)'")
    }
    try await providers.refreshDKIMKeys()
    return Herald_Delivery_V1_DeleteDkimKeyResponse()
  }

  static func dkimKey(_ stored: StoredDKIMKey) -> Herald_Delivery_V1_DkimKey {
    var key = Herald_Delivery_V1_DkimKey()
    key.domain = stored.domain
    key.selector = stored.selector
    key.algorithm = stored.algorithm == .rsaSHA256 ? .rsaSha256 : .ed25519Sha256
    key.dnsName = "\(stored.selector)._domainkey.\(stored.domain)"
    key.dnsRecord = DKIMKey.dnsRecord(algorithm: stored.algorithm, publicKey: stored.publicKey)
    key.createdAt = Google_Protobuf_Timestamp(date: stored.createdAt)
    return key
  }

  /// A sending domain as keys are stored under it: ASCII labels (punycode for IDN), lower-cased.
  static func dkimDomain(_ text: String) throws(RPCError) -> String {
    let domain = text.lowercased()
    guard domain.count <= 253, domain.wholeMatch(of: /([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}/) != nil else {
      throw RPCError.field(
        "domain", .invalidArgument,
        "domain '\(text)' must be a domain name such as example.com (ASCII; internationalised domains in punycode)")
    }
    return domain
  }

  /// A selector: DNS labels of letters, digits and dashes (RFC 6376 §3.1), at most 63 characters.
  static func dkimSelector(_ text: String) throws(RPCError) -> String {
    let label = /[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?/
    guard text.count <= 63, !text.isEmpty,
      text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ $0.wholeMatch(of: label) != nil })
    else {
      throw RPCError.field(
        "selector", .invalidArgument, "selector '\(text)' must be DNS labels of letters, digits and dashes, e.g. herald-2026-rsa")
    }
    return text
  }
}
