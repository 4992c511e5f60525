import Foundation
import GRPCCore
import HeraldProtos
import HeraldServerKit

/// A validated warm-up schedule (SPEC §3): a sending identity's daily caps, day by day.
package struct WarmupScheduleConfig: Sendable, Equatable {
  /// Trimmed of white space and line breaks at either end.
  package var sendingIdentity: String
  package var dailyCaps: [Int64]

  /// Checks every field; errors name the field, prefixed with `field` (e.g. "warmup_schedules[0]").
  package init(validating schedule: Herald_Delivery_V1_WarmupSchedule, field prefix: String = "") throws(RPCError) {
    func path(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
    let identity = schedule.sendingIdentity.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !identity.isEmpty else {
      throw .field(path("sending_identity"), .invalidArgument, "\(path("sending_identity")) is empty")
    }
    guard !schedule.dailyCaps.isEmpty, schedule.dailyCaps.count <= 366 else {
      throw .field(path("daily_caps"), .invalidArgument, "\(path("daily_caps")) must hold 1 to 366 days")
    }
    if let bad = schedule.dailyCaps.firstIndex(where: { $0 < 0 }) {
      throw .field(path("daily_caps[\(bad)]"), .invalidArgument, "\(path("daily_caps[\(bad)]")) must not be negative")
    }
    self.sendingIdentity = identity
    self.dailyCaps = schedule.dailyCaps
  }
}
