import Foundation
import HTTPTypes
import HeraldServerKit
import Hummingbird
import Logging
import NIOCore

/// The request context: who is calling (once authenticated) and snake_case JSON coding.
struct GatewayRequestContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  var principal: APIKeyPrincipal?
  /// The client's address (the public routes' rate limit is per address).
  let remoteAddress: SocketAddress?

  init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.principal = nil
    self.remoteAddress = source.channel.remoteAddress
  }

  var requestDecoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    decoder.dateDecodingStrategy = .iso8601
    return decoder
  }

  var responseEncoder: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }

  /// Throws 401 without a key, 403 unless the caller's key holds `scope` (or `admin`).
  func require(_ scope: String) throws {
    guard let principal else { throw Problem.unauthorized("an API key is required") }
    guard principal.allows(scope) else {
      throw Problem.forbidden(
        "this call needs the scope '\(scope)'; the key '\(principal.name)' has \(principal.scopes.sorted().joined(separator: ", "))")
    }
  }
}
