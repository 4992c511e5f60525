import HeraldPostgres
import Logging
import PostgresNIO
import Synchronization

/// What quiet hours read from the database (see `DeliveryService+QuietHours`).
extension DeliveryStore {
  private static let zoneNames = Mutex<Set<String>?>(nil)

  /// The time zones PostgreSQL knows (read once per process): only those go into the claim's
  /// `AT TIME ZONE`, which fails on any other.
  func timeZoneNames() async throws -> Set<String> {
    if let names = Self.zoneNames.withLock({ $0 }) { return names }
    var names = Set<String>()
    for try await name in try await client.query("SELECT name FROM pg_timezone_names", logger: logger).decode(String.self) {
      names.insert(name)
    }
    Self.zoneNames.withLock { $0 = names }
    return names
  }
}
