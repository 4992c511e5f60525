import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import _CryptoExtras

/// A provider's key or token, read from the delivery process's environment: the variable a
/// provider's settings name (`HERALD_PROVIDER_...`, so that no other variable of the process can
/// be sent anywhere) holds the value itself, or the path of a file that holds it. Keys never
/// enter the database.
package enum ProviderKey {
  /// Whether a settings field names a variable a provider may read: HERALD_PROVIDER_ and 1 to
  /// 100 upper-case letters, digits or underscores.
  package static func isVariableName(_ text: String) -> Bool {
    text.wholeMatch(of: /HERALD_PROVIDER_[A-Z0-9_]{1,100}/) != nil
  }

  /// The variable's value: its text when it holds `marker` (PEM, JSON) or is one line without a
  /// leading "/", else the contents of the file it names. Throws saying what is missing.
  package static func read(
    _ variable: String, holding marker: String? = nil, from environment: [String: String]
  ) throws(SendFailure) -> String {
    guard let value = environment[variable], !value.isEmpty else {
      throw .temporary("\(variable) is not set in the delivery process's environment")
    }
    if let marker, value.contains(marker) { return value }
    guard value.hasPrefix("/") else {
      if marker == nil { return value.trimmingCharacters(in: .whitespacesAndNewlines) }
      throw .temporary("\(variable) holds neither \(marker.map { "text with \($0)" } ?? "a value") nor the path of a file")
    }
    do {
      let text = try String(contentsOfFile: value, encoding: .utf8)
      if let marker, !text.contains(marker) {
        throw SendFailure.temporary("\(value) (named by \(variable)) holds no \(marker)")
      }
      return marker == nil ? text.trimmingCharacters(in: .whitespacesAndNewlines) : text
    } catch let failure as SendFailure {
      throw failure
    } catch {
      throw .temporary("\(value) (named by \(variable)) cannot be read: \(error)")
    }
  }
}

extension ProviderKey {
  /// A token sent as it is (a bearer token): never a private key another provider signs with,
  /// whatever variable a provider's definition names.
  package static func bearer(_ variable: String, from environment: [String: String]) throws(SendFailure) -> String {
    let value = try read(variable, from: environment)
    guard !value.contains("PRIVATE KEY"), !value.contains("private_key") else {
      throw .temporary("\(variable) holds a private key, which is never sent: name the variable of the access token")
    }
    return value
  }
}

/// JSON Web Tokens (RFC 7519) as the push services take them: compact, base64url, signed ES256
/// (APNs) or RS256 (Google's OAuth 2.0 service-account grant).
package enum JWT {
  package static func base64URL(_ data: some DataProtocol) -> String {
    Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  static func encode(_ object: [String: Any]) -> String {
    // Sorted keys: the same claims always give the same text.
    base64URL((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
  }

  /// header.claims.signature with ES256 (the raw r‖s signature, as RFC 7518 §3.4 asks).
  package static func es256(header: [String: Any], claims: [String: Any], key: P256.Signing.PrivateKey) throws -> String {
    let input = encode(header.merging(["alg": "ES256", "typ": "JWT"]) { given, _ in given }) + "." + encode(claims)
    let signature = try key.signature(for: Data(input.utf8))
    return input + "." + base64URL(signature.rawRepresentation)
  }

  /// header.claims.signature with RS256 (RSASSA-PKCS1-v1_5 over SHA-256).
  package static func rs256(header: [String: Any], claims: [String: Any], key: _RSA.Signing.PrivateKey) throws -> String {
    let input = encode(header.merging(["alg": "RS256", "typ": "JWT"]) { given, _ in given }) + "." + encode(claims)
    let signature = try key.signature(for: SHA256.hash(data: Data(input.utf8)), padding: .insecurePKCS1v1_5)
    return input + "." + base64URL(signature.rawRepresentation)
  }
}

/// The TLS of a provider that trusts a certificate besides the system's (a private gateway, a
/// local test server): nil for the system's trust alone (also when the PEM holds no certificate
/// that parses: the provider's sends then fail to verify the server, saying so).
enum ProviderTLS {
  static func configuration(trusting pem: String?) -> TLSConfiguration? {
    guard let pem, let certificates = try? NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)), !certificates.isEmpty else { return nil }
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.additionalTrustRoots = [.certificates(certificates)]
    return configuration
  }
}

/// What the push and WhatsApp providers share: their name, the process's HTTP client, the TLS
/// that trusts their `trusted_ca_pem`, and the `HERALD_PROVIDER_*` variables their keys are in.
struct ProviderEndpoint: Sendable {
  let name: String
  let client: HTTPClient
  let keys: [String: String]
  let tls: TLSConfiguration?

  init(name: String, client: HTTPClient, keys: [String: String], trustedCAPEM: String?) {
    self.name = name
    self.client = client
    self.keys = keys
    self.tls = ProviderTLS.configuration(trusting: trustedCAPEM)
  }

  /// A POST to `url` over this provider's TLS.
  func post(_ url: String) -> HTTPClientRequest {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.tlsConfiguration = tls
    return request
  }

  /// Sends `request`; the answer's status, headers and body (at most 64 KiB). No answer is
  /// `HTTPOutcome.noAnswer`: temporary when the request never left, else ambiguous.
  func execute(
    _ request: HTTPClientRequest, timeout: TimeAmount
  ) async throws(SendFailure) -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String) {
    let response: HTTPClientResponse
    do {
      response = try await client.execute(request, timeout: timeout)
    } catch {
      throw HTTPOutcome.noAnswer(error, provider: name)
    }
    let body = (try? await response.body.collect(upTo: 64 << 10)).map { String(buffer: $0) } ?? ""
    return (response.status, response.headers, body)
  }
}
