/// A job's mappings resolved against the remote table's schema.
struct ResolvedMapping: Sendable {
  var subscriberField: String
  var fieldID: String
  var fieldName: String
  var fieldType: String
  var policy: ConflictPolicy

  var pushOnly: Bool { SubscriberField.pushOnly.contains(subscriberField) }
}
