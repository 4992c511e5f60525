import Synchronization

/// One value per process, made from the first `ServiceResources` it is asked with: what a
/// definition's RPC services, background workers and `prepare` share (the host builds them
/// separately from the same resources).
package final class PerProcess<Value: Sendable>: Sendable {
  private let value = Mutex<Value?>(nil)
  private let make: @Sendable (ServiceResources) -> Value

  package init(_ make: @escaping @Sendable (ServiceResources) -> Value) {
    self.make = make
  }

  package func callAsFunction(_ resources: ServiceResources) -> Value {
    value.withLock { value in
      if let value { return value }
      let made = make(resources)
      value = made
      return made
    }
  }
}
