import HeraldCore

/// A record of a remote table; `fields` are keyed by field id and leave out empty values.
package struct RemoteRecord: Sendable, Equatable {
  package var id: String
  package var createdTime: String
  package var fields: [String: JSONValue]
}
