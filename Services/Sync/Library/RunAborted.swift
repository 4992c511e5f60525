import GRPCCore

/// A run that stopped on purpose (the deletion cap, a mapping the table does not have, a token
/// that is not set): the run is recorded as aborted with this message and nothing more is
/// changed. A request that meets the same problem (ResolveConflict) answers FAILED_PRECONDITION
/// with it: the job needs fixing before it can go on.
struct RunAborted: Error, CustomStringConvertible, RPCErrorConvertible {
  var description: String

  var rpcErrorCode: RPCError.Code { .failedPrecondition }
  var rpcErrorMessage: String { description }
}
