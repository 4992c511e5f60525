import GRPCCore

/// An error answer of the remote API, or a failure to reach it. Never shows the token.
package struct AirtableError: Error, CustomStringConvertible, Sendable {
  package var status: Int?
  package var type: String
  package var message: String
  package var request: String

  package var description: String {
    if let status { return "\(request) answered \(status) \(type): \(message)" }
    return "\(request) failed: \(message)"
  }
}

/// As a request that reaches the table (ResolveConflict) answers it: UNAVAILABLE while the table
/// cannot answer (unreachable, over its rate limit, a server error), FAILED_PRECONDITION when it
/// refuses the job's settings (its token, base, table or fields), with what the table said.
extension AirtableError: RPCErrorConvertible {
  package var rpcErrorCode: RPCError.Code {
    guard let status, status != 429, status < 500 else { return .unavailable }
    return .failedPrecondition
  }

  package var rpcErrorMessage: String { description }
}
