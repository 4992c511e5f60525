import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// HTTP status to send outcome, shared by the HTTP providers: 2xx sent; 408, 425, 429 and 5xx
/// temporary (429/503 with the provider's Retry-After); other 4xx permanent.
enum HTTPOutcome {
  static func failure(status: HTTPResponseStatus, headers: HTTPHeaders, body: String, provider: String) -> SendFailure {
    let text = "\(provider) answered \(status.code) \(status.reasonPhrase): \(body.prefix(300))"
    switch status.code {
    case 408, 425, 429, 500...599:
      return .temporary(text, retryAfter: retryAfter(headers))
    default:
      return .permanent(text)
    }
  }

  /// Retry-After in seconds (the HTTP-date form is rare for APIs and is ignored).
  static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
    guard let value = headers.first(name: "Retry-After"), let seconds = Int(value.trimmingCharacters(in: .whitespaces)),
      seconds >= 0
    else { return nil }
    return .seconds(min(seconds, 3600))
  }

  /// A request that got no answer: temporary when it never left (no connection, no TLS), else
  /// ambiguous (the service may have taken it). For the services that take no idempotency key
  /// (push, WhatsApp), where a second copy would be shown twice.
  static func noAnswer(_ error: any Error, provider: String) -> SendFailure {
    let text = "\(provider): no answer (\(error))"
    if let client = error as? HTTPClientError,
      [.connectTimeout, .tlsHandshakeTimeout, .getConnectionFromPoolTimeout, .alreadyShutdown].contains(client)
    {
      return .temporary(text)
    }
    if error is NIOConnectionError { return .temporary(text) }
    if let tls = error as? NIOSSLError {
      // Before any request byte: the handshake and the certificate. A TLS error later (an
      // unclean shutdown mid-answer) may follow a request the service took.
      switch tls {
      case .handshakeFailed, .unableToValidateCertificate, .noCertificateToValidate, .cannotMatchULabel, .failedToLoadCertificate:
        return .temporary(text)
      default: break
      }
    }
    if let channel = error as? ChannelError, case .connectTimeout = channel { return .temporary(text) }
    if let io = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(io.errnoCode) { return .temporary(text) }
    return .ambiguous(text)
  }

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }()

  static func json(_ payload: some Encodable) throws(SendFailure) -> Data {
    do {
      return try encoder.encode(payload)
    } catch {
      throw .permanent("the message could not be written as JSON: \(error)")
    }
  }

  /// Sends `request`; a 2xx answer gives its JSON object (nil when the body is not one), anything
  /// else the failure it means.
  /// `idempotent`: whether the request may be sent again when no answer came (it carries an
  /// Idempotency-Key, or is a token request); else a send that may have arrived is ambiguous.
  static func send(
    _ request: HTTPClientRequest, client: HTTPClient, timeout: TimeAmount, provider: String, idempotent: Bool = true
  ) async throws(SendFailure) -> [String: Any]? {
    let response: HTTPClientResponse
    do {
      response = try await client.execute(request, timeout: timeout)
    } catch {
      // Refused, timed out or cut off. With an Idempotency-Key the provider itself drops a second
      // copy when the first did arrive: retrying is safe.
      guard idempotent else { throw noAnswer(error, provider: provider) }
      throw .temporary("\(provider): no answer (\(error))")
    }
    let body: String
    do {
      body = String(buffer: try await response.body.collect(upTo: 1 << 20))
    } catch {
      // Taken (2xx) by a service that would take a second copy too: sent, without its id.
      if !idempotent, (200..<300).contains(response.status.code) { return nil }
      throw .temporary("\(provider) answered \(response.status.code) but its body could not be read: \(error)")
    }
    guard (200..<300).contains(response.status.code) else {
      throw failure(status: response.status, headers: response.headers, body: body, provider: provider)
    }
    return try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
  }
}
