import PostgresNIO

/// Builds one parameterised SQL text: every value is a bind, never spliced into the text.
package struct SQLBuilder {
  package private(set) var binds = PostgresBindings()
  private var count = 0

  package init() {}

  package mutating func bind<Value: PostgresDynamicTypeEncodable>(_ value: Value) -> String {
    binds.append(value)
    count += 1
    return "$\(count)"
  }

  package func query(_ sql: String) -> PostgresQuery {
    PostgresQuery(unsafeSQL: sql, binds: binds)
  }
}
