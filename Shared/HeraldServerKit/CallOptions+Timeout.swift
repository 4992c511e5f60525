import GRPCCore

extension CallOptions {
  package static func timeout(_ duration: Duration) -> CallOptions {
    var options = CallOptions.defaults
    options.timeout = duration
    return options
  }
}
