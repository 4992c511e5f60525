import Foundation
import GRPCCore
import HeraldCore

/// What wins when both sides changed a field since the last sync (SPEC §5).
package enum ConflictPolicy: String, Sendable, CaseIterable {
  case localWins = "local_wins"
  case remoteWins = "remote_wins"
  case lastWriterWins = "last_writer_wins"
  case manual
}

/// A sync job: which remote table is synced with the subscribers, how, and where it stands.
package struct SyncJob: Sendable, Equatable {
  package enum Direction: String, Sendable { case pull, push, both }
  package struct Mapping: Sendable, Equatable {
    package var externalField: String
    package var subscriberField: String
    /// nil: the job's default policy.
    package var policy: ConflictPolicy?

    package init(externalField: String, subscriberField: String, policy: ConflictPolicy? = nil) {
      self.externalField = externalField
      self.subscriberField = subscriberField
      self.policy = policy
    }
  }

  /// nil until the job is stored (the database gives it its id).
  package var id: UUID?
  package var name: String
  package var baseID: String
  package var tableID: String
  package var tokenEnv: String
  package var direction: Direction
  package var mappings: [Mapping]
  package var createdAt: Date?
  /// The remote last-modified field incremental pulls filter and sort on; "" when there is none.
  package var modifiedField = ""
  package var overlap: Int = 60
  package var defaultPolicy: ConflictPolicy = .remoteWins
  /// Seconds between scheduled runs; 0 = on demand only.
  package var scheduleSeconds = 0
  package var reconcileSeconds = 86_400
  package var maxDeletePercent = 10
  package var cursor = ""
  package var lastFullSyncAt: Date?

  package var pulls: Bool { direction != .push }
  package var pushes: Bool { direction != .pull }

  package func policy(of subscriberField: String) -> ConflictPolicy {
    mappings.first { $0.subscriberField == subscriberField }?.policy ?? defaultPolicy
  }

  /// The id of a stored job; a job that was never stored has none (a programming error, reported
  /// as INTERNAL rather than trapping).
  package func storedID() throws -> UUID {
    guard let id else { throw RPCError(code: .internalError, message: "sync job '\(name)' has no id: it was never stored") }
    return id
  }
}

/// Counts of one run, saved with each checkpoint (so a run in progress shows them).
package struct RunCounts: Codable, Sendable, Equatable {
  package var recordsRead = 0
  package var created = 0
  package var updated = 0
  package var unchanged = 0
  package var duplicates = 0
  package var softDeleted = 0
  package var pushed = 0
  package var conflicts = 0
  package var errors = 0
  package var apiCalls = 0
  package var rateLimited = 0
  package var cursorRestarts = 0

  package init() {}

  /// The counts `herald_sync_records_total` reports, by its `outcome` label.
  var outcomes: [(outcome: String, count: Int)] {
    [
      ("created", created), ("updated", updated), ("unchanged", unchanged), ("deleted", softDeleted), ("errors", errors),
      ("conflicts", conflicts), ("pushed", pushed),
    ]
  }
}

/// One change a dry run would have made.
package struct PlannedChange: Codable, Sendable, Equatable {
  package var recordID: String
  package var action: String
  package var subscriberID: String
  package var fields: [String]
}

/// A record a run skipped: its field (when one is to blame) and why.
package struct RecordError: Sendable, Equatable {
  package var recordID: String
  package var field: String
  package var message: String
}

/// A run as `sync.runs` keeps it, with its record errors when read on its own.
package struct SyncRunRecord: Sendable {
  package enum Status: String, Sendable { case running, succeeded, failed, aborted, interrupted }
  package var id: UUID
  package var jobID: UUID
  package var status: Status
  package var phase: String
  package var dryRun: Bool
  package var full: Bool
  package var sweepID: UUID
  package var resumedFrom: UUID?
  package var startedAt: Date
  package var finishedAt: Date?
  package var cursorBefore: String
  package var checkpoint: String
  package var cursorAfter: String
  package var counts: RunCounts
  package var planned: [PlannedChange]
  package var error: String
  package var errors: [RecordError] = []
}

/// What a new run starts from: a fresh one, or the run it resumes (its sweep and checkpoint).
struct NewRun: Sendable {
  var jobID: UUID
  var dryRun: Bool
  var full: Bool
  var sweepID: UUID
  var resumedFrom: UUID?
  var cursorBefore: String
  var checkpoint: String
}

/// A run's progress: phase, counts, planned changes and (after a page is applied) its checkpoint.
struct RunProgress: Sendable {
  var run: UUID
  var phase: String
  var checkpoint: String
  var counts: RunCounts
  var planned: [PlannedChange]
}

/// A remote record's link to its subscriber and both sides' values at the last sync.
struct RecordLink: Sendable {
  var recordID: String
  var subscriberID: UUID
  var remoteModified: String
  var remoteValues: [String: JSONValue]
  var localValues: [String: JSONValue]
  var deleted: Bool
}

/// A link of another record to one of a page's subscribers (or a soft-deleted link of it).
struct SubscriberLink: Sendable {
  var subscriberID: UUID
  var recordID: String
  var deleted: Bool
}

/// A conflict as found by a run (before it is stored).
struct FoundConflict: Sendable {
  var recordID: String
  var subscriberID: UUID
  var field: String
  var base: JSONValue?
  var local: JSONValue
  var remote: JSONValue
  var policy: ConflictPolicy
  var resolution: String
}

/// What one applied page writes in one transaction with the run's checkpoint: new or changed
/// links, linked records seen unchanged (a full run's sweep), conflicts and record errors.
struct PageWrite: Sendable {
  var links: [RecordLink] = []
  var seen: [String] = []
  var conflicts: [FoundConflict] = []
  var errors: [RecordError] = []
  /// The sweep the links and seen records are marked with (full runs only).
  var sweep: UUID?
  var progress: RunProgress
}

/// A stored conflict, as `sync.conflicts` keeps it (values as JSON text, nil for SQL NULL).
package struct SyncConflict: Sendable, Equatable {
  package var id: UUID
  package var jobID: UUID
  package var runID: UUID
  package var recordID: String
  package var subscriberID: UUID
  package var subscriberField: String
  package var baseJSON: String?
  package var localJSON: String?
  package var remoteJSON: String?
  /// nil for a policy this version does not know.
  package var policy: ConflictPolicy?
  /// `pending`, `local` or `remote`.
  package var resolution: String
  package var createdAt: Date
  package var resolvedAt: Date?
}
