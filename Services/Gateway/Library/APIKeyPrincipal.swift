import Foundation

/// Who is calling: the API key the request was authenticated with.
struct APIKeyPrincipal: Sendable, Equatable {
  /// Scopes an API key may hold. `admin` allows everything; `read` allows every read.
  static let scopes: Set<String> = [
    "admin", "read", "subscribers:write", "campaigns:write", "templates:write", "delivery:write",
    "ratelimit:write", "sync:write", "verification:write", "conversions:write", "events:write",
  ]

  var id: UUID
  var name: String
  var scopes: Set<String>

  func allows(_ scope: String) -> Bool {
    scopes.contains("admin") || scopes.contains(scope)
  }
}
