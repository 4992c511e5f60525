/// A push notification's custom data, as both the campaign templates and delivery's messages
/// check it.
package enum PushData {
  /// Keys the platforms (APNs' aps, FCM's reserved words and prefixes) or Herald (deep_link) use:
  /// no template or message may set them.
  package static func isReservedKey(_ key: String) -> Bool {
    ["aps", "from", "deep_link", "notification", "message_type"].contains(key) || key.hasPrefix("google") || key.hasPrefix("gcm")
  }
}
