import Foundation

/// Resolves a job's mappings against the remote table's schema.
enum MappingResolver {
  /// Checks the job's mappings against the table (SPEC §5: at the start of each run); the error
  /// names the mapping and lists the table's fields.
  static func resolve(_ job: SyncJob, fields: [RemoteField]) throws -> (mappings: [ResolvedMapping], modified: RemoteField?) {
    let names = fields.map(\.name).joined(separator: ", ")
    func find(_ key: String) -> RemoteField? { fields.first { $0.id == key || $0.name == key } }
    var resolved: [ResolvedMapping] = []
    for (index, mapping) in job.mappings.enumerated() {
      guard let field = find(mapping.externalField) else {
        throw RunAborted(
          description:
            "mappings[\(index)].external_field '\(mapping.externalField)' is not a field of table \(job.tableID) (its fields: \(names))")
      }
      let local = mapping.subscriberField
      if local.hasSuffix("_subscribed") && field.type != "checkbox" {
        throw RunAborted(description: "mappings[\(index)]: \(local) needs a checkbox field, '\(field.name)' is \(field.type)")
      }
      let computed = ["lastModifiedTime", "createdTime", "formula", "autoNumber", "rollup", "count", "lookup"].contains(field.type)
      if computed && (SubscriberField.pushOnly.contains(local) || job.direction != .pull) {
        throw RunAborted(description: "mappings[\(index)]: '\(field.name)' is a computed \(field.type) field and cannot be written")
      }
      resolved.append(
        ResolvedMapping(
          subscriberField: local, fieldID: field.id, fieldName: field.name, fieldType: field.type,
          policy: mapping.policy ?? job.defaultPolicy))
    }
    var modified: RemoteField?
    if !job.modifiedField.isEmpty {
      guard let field = find(job.modifiedField) else {
        throw RunAborted(description: "modified_field '\(job.modifiedField)' is not a field of table \(job.tableID) (its fields: \(names))")
      }
      guard ["lastModifiedTime", "dateTime"].contains(field.type) else {
        throw RunAborted(description: "modified_field '\(field.name)' is a \(field.type) field, not a last-modified time")
      }
      modified = field
    }
    return (resolved, modified)
  }
}
