/// A field of a remote table, as its schema describes it.
package struct RemoteField: Sendable, Equatable {
  package var id: String
  package var name: String
  package var type: String
}
