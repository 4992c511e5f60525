import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import PostgresNIO

/// `herald.sync.v1.SyncService` (SPEC §5): its handlers check requests and map between protobuf
/// messages and the store's records, by area: jobs (`SyncService+Jobs.swift`), runs (`+Runs`)
/// and conflicts (`+Conflicts`). Every statement is the store's (`SyncStore`); runs and the job
/// lock are the run manager's.
package struct SyncService: Herald_Sync_V1_SyncService.SimpleServiceProtocol {
  let store: SyncStore
  let runs: RunManager

  package init(store: SyncStore, runs: RunManager) {
    self.store = store
    self.runs = runs
  }

  /// The job `text` names, or NOT_FOUND naming `field`.
  func job(_ text: String, field: String) async throws -> SyncJob {
    let id = try RPCError.uuid(text, field: field)
    guard let job = try await store.job(id) else { throw RPCError.field(field, .notFound, "no sync job has id \(text)") }
    return job
  }

  /// FAILED_PRECONDITION: a run of the job holds its lock.
  static func busy(_ name: String, _ run: UUID?, _ consequence: String) -> RPCError {
    RPCError(
      code: .failedPrecondition,
      message: "a run of job '\(name)' is in progress\(run.map { " (run \($0.lowercasedString))" } ?? ""): \(consequence)")
  }

  /// `body` on the connection holding `job`'s lock; FAILED_PRECONDITION saying `consequence`
  /// while a run of the job holds it.
  func whileNoRun<T: Sendable>(
    _ job: SyncJob, _ consequence: String, _ body: (PostgresConnection) async throws -> T
  ) async throws -> T {
    do {
      return try await runs.withJobLock(job, body)
    } catch RunManager.StartError.busy(let name, let run) {
      throw Self.busy(name, run, consequence)
    }
  }
}
