/// One configured way of sending a channel's messages.
package protocol DeliveryProvider: Sendable {
  /// Sends one message; returns the provider's message id when it gives one.
  func send(_ message: OutgoingMessage) async throws(SendFailure) -> String?
  /// Closes pooled connections.
  func shutdown() async
}
