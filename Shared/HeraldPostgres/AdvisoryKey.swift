import Foundation
import HeraldCore
import PostgresNIO

/// A two-integer advisory lock key made of the first 64 bits of a UUID (a job's or a repair's):
/// collisions are as unlikely as the ids', and the two-integer key space is apart from the
/// one-bigint keys of the migration locks.
package struct AdvisoryKey: Sendable, Equatable {
  package var high: Int32
  package var low: Int32

  package init(_ id: UUID) {
    let bytes = id.bytes
    func int(_ range: Range<Int>) -> Int32 { Int32(bitPattern: range.reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[$1]) }) }
    (high, low) = (int(0..<4), int(4..<8))
  }

  /// `SELECT pg_try_advisory_lock(...)`: a session lock, until `unlock`.
  package var trySessionLock: PostgresQuery { "SELECT pg_try_advisory_lock(\(high)::int, \(low)::int)" }
  package var unlock: PostgresQuery { "SELECT pg_advisory_unlock(\(high)::int, \(low)::int)" }
  /// `SELECT pg_try_advisory_xact_lock(...)`: held until the transaction ends.
  package var tryTransactionLock: PostgresQuery { "SELECT pg_try_advisory_xact_lock(\(high)::int, \(low)::int)" }
}
