import HeraldCore
import HeraldPostgres
import HeraldServerKit
import PostgresNIO
import Testing

@Suite(.timeLimit(.minutes(3))) struct SettingsTests {
  let valid = [
    "HERALD_DATABASE_URL": "postgres://herald:s3cret-pw@db.internal:5432/herald?sslmode=disable",
    "HERALD_DELIVERY_ADDR": "127.0.0.1:7102",
  ]

  func load(_ environment: [String: String], name: String = "campaign") throws -> ServiceConfiguration {
    try ServiceConfiguration.load(name: name, settings: Settings(environment: environment))
  }

  @Test func readsAValidEnvironmentWithDefaults() throws {
    let configuration = try load(valid)
    #expect(configuration.port == 7101)
    #expect(configuration.host == "127.0.0.1")
    #expect(configuration.dependencies["delivery"] == ServiceAddress(host: "127.0.0.1", port: 7102))
    #expect(configuration.database.database == "herald")
    #expect(configuration.database.client.host == "db.internal")
    #expect(configuration.database.client.password == "s3cret-pw")
    #expect(configuration.rpcTimeout == .seconds(5))
  }

  @Test func missingDatabaseURLIsNamed() {
    var environment = valid
    environment["HERALD_DATABASE_URL"] = nil
    #expect(throws: ConfigurationError.missing(variable: "HERALD_DATABASE_URL", purpose: "the PostgreSQL connection URL")) {
      try load(environment)
    }
  }

  @Test func missingDependencyAddressIsNamed() {
    var environment = valid
    environment["HERALD_DELIVERY_ADDR"] = nil
    #expect(throws: ConfigurationError.missing(variable: "HERALD_DELIVERY_ADDR", purpose: "address of the delivery service")) {
      try load(environment)
    }
  }

  @Test(arguments: [
    ("HERALD_PORT", "eighty", "a whole number from 1 to 65535"),
    ("HERALD_PORT", "70000", "a whole number from 1 to 65535"),
    ("HERALD_RPC_TIMEOUT", "5", "a duration such as 250ms, 5s, 2m or 72h"),
    ("HERALD_DELIVERY_ADDR", "localhost", "host:port, e.g. 127.0.0.1:7101"),
    ("HERALD_LOG_LEVEL", "loud", "one of trace, debug, info, notice, warning, error, critical"),
  ])
  func malformedValuesAreNamedNotReplacedByDefaults(variable: String, value: String, expected: String) {
    var environment = valid
    environment[variable] = value
    #expect(throws: ConfigurationError.malformed(variable: variable, value: "'\(value)'", expected: expected)) {
      try load(environment)
    }
  }

  @Test func aMalformedDatabaseURLNeverShowsThePassword() {
    var environment = valid
    environment["HERALD_DATABASE_URL"] = "mysql://herald:hunter2-secret@db/herald"
    do {
      _ = try load(environment)
      Issue.record("expected an error")
    } catch {
      let text = "\(error)"
      #expect(text.contains("HERALD_DATABASE_URL"))
      #expect(!text.contains("hunter2"))
    }
  }

  @Test func secretNamesAreRecognised() {
    #expect(Settings.isSecretName("HERALD_DATABASE_URL"))
    #expect(Settings.isSecretName("HERALD_ADMIN_API_KEY"))
    #expect(Settings.isSecretName("AIRTABLE_TOKEN"))
    #expect(!Settings.isSecretName("HERALD_PORT"))
    #expect("\(Secret("hunter2"))" == "<redacted>")
  }

  @Test func sslModesAndRootCertificate() throws {
    for mode in ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] {
      _ = try DatabaseConfiguration(url: "postgres://u:pw@db:5432/herald?sslmode=\(mode)")
    }
    let unknown = #expect(throws: ConfigurationError.self) {
      try DatabaseConfiguration(url: "postgres://u:s3cret@db:5432/herald?sslmode=verify")
    }
    #expect("\(unknown!)".contains("unknown sslmode 'verify'") && !"\(unknown!)".contains("s3cret"))
    let missing = #expect(throws: ConfigurationError.self) {
      try DatabaseConfiguration(url: "postgres://u:pw@db:5432/herald?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt")
    }
    #expect("\(missing!)".contains("sslrootcert '/nonexistent/ca.crt' is not a readable file"))
  }

  @Test func unixSocketURLs() throws {
    let configuration = try DatabaseConfiguration(url: "postgres://postgres@localhost/herald?host=/tmp/pg")
    #expect(configuration.client.unixSocketPath == "/tmp/pg/.s.PGSQL.5432")
    #expect(configuration.database == "herald")
  }
}
