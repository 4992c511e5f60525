import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import PostgresNIO
import SwiftProtobuf

/// One run of one job, on the connection that holds the job's lock: it checks the mappings
/// against the table, pulls (or links) page by page, reconciles deletes after a full read, and
/// pushes. Every statement is the store's; subscribers are read and written through the campaign
/// service.
final class SyncExecution {
  let job: SyncJob
  let jobID: UUID
  var run: SyncRunRecord
  let store: SyncStore
  let connection: PostgresConnection
  let campaign: CampaignClient
  let connector: AirtableClient
  let shouldStop: @Sendable () -> Bool
  let logger: Logger
  var mappings: [ResolvedMapping] = []
  var modifiedField: RemoteField?
  var errors: [RecordError] = []
  /// A dry run saves nothing, so its full read remembers here which records it saw.
  var seenInDryRun = Set<String>()
  /// The counts already added to `herald_sync_records_total`.
  private var countedRecords = RunCounts()
  var source: String { "sync:\(job.name)" }

  /// What became of one record of a page.
  enum RecordOutcome {
    case synced(RecordLink, [FoundConflict])
    /// Its subscriber is created with the page's other new ones (`createSubscribers`), then
    /// linked with these values.
    case created(remote: [String: JSONValue], modified: String)
    case failed(RecordFailure)
  }

  /// A subscriber to create for the record at `position` of a page's outcomes.
  struct Creation: Sendable {
    var position: Int
    var request: Herald_Campaign_V1_CreateSubscriberRequest
  }

  init(
    job: SyncJob, jobID: UUID, run: SyncRunRecord, store: SyncStore, connection: PostgresConnection, campaign: CampaignClient,
    connector: AirtableClient, shouldStop: @escaping @Sendable () -> Bool, logger: Logger
  ) {
    self.job = job
    self.jobID = jobID
    self.run = run
    self.store = store
    self.connection = connection
    self.campaign = campaign
    self.connector = connector
    self.shouldStop = shouldStop
    self.logger = logger
  }

  /// Validates, pulls (or links), reconciles deletes on a full run, pushes; returns the cursor.
  func perform() async throws -> String {
    (mappings, modifiedField) = try MappingResolver.resolve(job, fields: try await connector.fields())
    try await pull()
    if run.full && job.pulls { try await reconcile() }
    if job.pushes { try await push() }
    return run.checkpoint.isEmpty ? run.cursorBefore : run.checkpoint
  }

  // MARK: - Progress

  func saveProgress(phase: String) async throws {
    try await store.saveProgress(progress(phase: phase), on: connection)
  }

  /// The run's progress as it stands (counts brought up to date with the connector's).
  func progress(phase: String, checkpoint: String? = nil) -> RunProgress {
    run.phase = phase
    run.counts.apiCalls = connector.stats.calls
    run.counts.rateLimited = connector.stats.rateLimited
    run.counts.cursorRestarts = connector.stats.iteratorRestarts
    countRecords()
    return RunProgress(
      run: run.id, phase: phase, checkpoint: run.dryRun ? "" : (checkpoint ?? run.checkpoint), counts: run.counts, planned: run.planned)
  }

  /// Adds what the run counted since the last time to `herald_sync_records_total{outcome}` (a dry
  /// run changes nothing, so it adds nothing).
  func countRecords() {
    guard !run.dryRun else { return }
    for ((outcome, count), (_, counted)) in zip(run.counts.outcomes, countedRecords.outcomes) where count > counted {
      Counter(label: "herald_sync_records_total", dimensions: [("outcome", outcome)]).increment(by: count - counted)
    }
    countedRecords = run.counts
  }

  func fail(_ recordID: String, _ failure: RecordFailure) {
    run.counts.errors += 1
    errors.append(RecordError(recordID: recordID, field: failure.field, message: failure.message))
  }

  func plan(_ recordID: String, _ action: String, subscriber: String, fields: [String]) {
    guard run.dryRun, run.planned.count < SyncStore.maxErrors else { return }
    run.planned.append(PlannedChange(recordID: recordID, action: action, subscriberID: subscriber, fields: fields.sorted()))
  }

  // MARK: - Pull

  func pull() async throws {
    try await saveProgress(phase: job.pulls ? "pulling" : "linking")
    // A resumed run carries on from its checkpoint; an incremental one from the job's cursor; a
    // listing whose cursor expired, from the last page applied.
    func filter() -> String? {
      let since = run.checkpoint.isEmpty ? (run.full ? "" : run.cursorBefore) : run.checkpoint
      guard let modifiedField, let time = ISOTime.parse(since) else { return nil }
      let from = ISOTime.format(time.addingTimeInterval(-Double(job.overlap)))
      return "IS_AFTER({\(modifiedField.name)}, '\(from)')"
    }
    try await connector.list(filterByFormula: filter(), sortField: modifiedField?.id, restartFilter: filter) { page in
      if shouldStop() { throw RunStopped() }
      try await apply(page)
    }
  }

  /// Why a record cannot be stored at all, if it cannot: PostgreSQL keeps no NUL character
  /// (U+0000) in text or jsonb, so a record whose id, synced values or last-modified time hold
  /// one is that record's error (naming the field), not a failed statement for the whole page.
  func unstorable(_ record: RemoteRecord) -> RecordFailure? {
    let what = "a NUL character (U+0000), which Herald cannot store: the record is skipped until it is corrected"
    if record.id.contains("\u{0}") { return RecordFailure(field: "", message: "the record id holds \(what)") }
    for mapping in mappings where !mapping.pushOnly {
      if let value = record.fields[mapping.fieldID], value.holdsNUL {
        return RecordFailure(field: mapping.subscriberField, message: "the value of '\(mapping.fieldName)' holds \(what)")
      }
    }
    if let modifiedField, let value = record.fields[modifiedField.id], value.holdsNUL {
      return RecordFailure(
        field: modifiedField.name, message: "the value of '\(modifiedField.name)' (the job's modified_field) holds \(what)")
    }
    return nil
  }

  /// Applies one page, then saves its links, conflicts and errors with the checkpoint in one
  /// transaction: a crash before that re-reads the page, after it never does.
  func apply(_ page: [RemoteRecord]) async throws {
    run.counts.recordsRead += page.count
    if run.dryRun { seenInDryRun.formUnion(page.map(\.id)) }
    var refused: [String: RecordFailure] = [:]
    for record in page {
      if let failure = unstorable(record) { refused[record.id] = failure }
    }
    // (A record id with NUL cannot even be looked up.)
    let ids = page.map(\.id).filter { !$0.contains("\u{0}") }
    let links = try await store.links(of: jobID, records: ids, on: connection)
    let pending = try await store.pendingFields(of: jobID, records: ids, on: connection)
    let synced = mappings.filter { !$0.pushOnly }

    // The subscribers already linked, and those an unlinked record may be (same email or phone).
    var lookup = Herald_Campaign_V1_LookupSubscribersRequest()
    lookup.ids = links.values.map { $0.subscriberID.lowercasedString }
    for record in page where links[record.id] == nil && refused[record.id] == nil {
      for mapping in synced {
        guard let value = record.fields[mapping.fieldID]?.stringValue else { continue }
        if mapping.subscriberField == "email" { lookup.emails.append(value) }
        if mapping.subscriberField == "phone" { lookup.phones.append(value) }
      }
    }
    let found = try await campaign.lookupSubscribers(lookup).subscribers
    var byID: [String: Herald_Campaign_V1_Subscriber] = [:]
    var byKey: [String: Herald_Campaign_V1_Subscriber] = [:]
    for subscriber in found {
      byID[subscriber.id] = subscriber
      if !subscriber.email.isEmpty { byKey["email:" + subscriber.email] = subscriber }
      if !subscriber.phone.isEmpty { byKey["phone:" + subscriber.phone] = subscriber }
    }

    // A subscriber is synced with one record of a table: another record with the same email or
    // phone is reported, not linked.
    var linkedTo: [UUID: String] = [:]
    for link in links.values { linkedTo[link.subscriberID] = link.recordID }
    let unlinked = found.compactMap { UUID(text: $0.id) }.filter { linkedTo[$0] == nil }
    // A subscriber whose record was deleted from the table (link soft-deleted) may come back with
    // a new record: it is linked to that one and made active again.
    var revived = Set<UUID>()
    for other in try await store.links(of: jobID, subscribers: unlinked, on: connection) {
      if other.deleted { revived.insert(other.subscriberID) } else { linkedTo[other.subscriberID] = other.recordID }
    }

    // Each record's outcome, in page order; the subscribers of new records are created after the
    // loop, several at a time (`createSubscribers`), and their outcomes filled in then.
    var outcomes: [(record: RemoteRecord, link: RecordLink?, outcome: RecordOutcome)] = []
    var creations: [Creation] = []
    var seen: [String] = []
    var lastModified = ""
    for record in page {
      let link = links[record.id]
      if let failure = refused[record.id] {
        outcomes.append((record, link, .failed(failure)))
        continue
      }
      let modified = modifiedField.flatMap { record.fields[$0.id]?.stringValue } ?? ""
      if modified > lastModified { lastModified = modified }
      if let link, !modified.isEmpty, link.remoteModified == modified, !link.deleted,
        synced.allSatisfy({ link.remoteValues[$0.subscriberField] != nil })
      {
        // Read again (overlap window, restarted listing): applied already.
        run.counts.duplicates += 1
        seen.append(record.id)
        continue
      }
      var remote: [String: JSONValue] = [:]
      for mapping in synced {
        remote[mapping.subscriberField] = SubscriberField.remote(record.fields[mapping.fieldID], field: mapping.subscriberField)
      }
      var subscriber = link.flatMap { byID[$0.subscriberID.lowercasedString] }
      if subscriber == nil {
        for key in SubscriberField.keys {
          guard case .string(let value) = remote[key] ?? .null else { continue }
          if let match = byKey["\(key):\(SubscriberField.matchKey(value, field: key))"] {
            subscriber = match
            break
          }
        }
      }
      do {
        guard let subscriber else {
          if let request = try creation(record, remote: remote) {
            creations.append(Creation(position: outcomes.count, request: request))
            outcomes.append((record, link, .created(remote: remote, modified: modified)))
          }
          continue
        }
        if link == nil, let id = UUID(text: subscriber.id) {
          if let other = linkedTo[id], other != record.id {
            throw RecordFailure(
              field: "email",
              message: "subscriber \(subscriber.id) is already synced with record \(other); this record has the same email or phone")
          }
          linkedTo[id] = record.id
        }
        let revive = UUID(text: subscriber.id).map(revived.contains) ?? false
        if let synced = try await sync(
          record, remote: remote, modified: modified, link: link, subscriber: subscriber, pending: pending, revive: revive)
        {
          outcomes.append((record, link, .synced(synced.link, synced.conflicts)))
        }
      } catch let failure as RecordFailure {
        outcomes.append((record, link, .failed(failure)))
      }
    }
    let created = try await createSubscribers(creations)

    var saved: [RecordLink] = []
    var conflicts: [FoundConflict] = []
    for (position, (record, link, outcome)) in outcomes.enumerated() {
      var failure: RecordFailure?
      switch outcome {
      case .synced(let synced, let found):
        saved.append(synced)
        conflicts += found
      case .created(let remote, let modified):
        switch created[position] {
        case .success(let subscriber)?:
          run.counts.created += 1
          do {
            saved.append(
              try snapshot(record, modified: modified, remote: remote, subscriber: subscriber, keepLocal: [], pending: [], old: nil))
          } catch {
            failure = error
          }
        case .failure(let refusal)?: failure = refusal
        case nil: break
        }
      case .failed(let refusal): failure = refusal
      }
      if let failure {
        fail(record.id, failure)
        // Still in the table: a full run's reconciliation must not take it for deleted.
        if link != nil { seen.append(record.id) }
      }
    }
    let checkpoint = !lastModified.isEmpty && lastModified > run.checkpoint ? lastModified : run.checkpoint
    guard !run.dryRun else {
      run.checkpoint = checkpoint
      try await saveProgress(phase: run.phase)
      return
    }
    let write = PageWrite(
      links: saved, seen: seen, conflicts: conflicts, errors: errors, sweep: run.full ? run.sweepID : nil,
      progress: progress(phase: run.phase, checkpoint: checkpoint))
    try await store.commitPage(write, job: jobID, on: connection)
    // Only once the page is committed does the run move past it.
    run.checkpoint = checkpoint
    errors = []
  }

  /// The subscriber's id, which the campaign service gives as a UUID; a record whose subscriber
  /// has another is that record's error.
  static func subscriberID(_ subscriber: Herald_Campaign_V1_Subscriber) throws(RecordFailure) -> UUID {
    guard let id = UUID(text: subscriber.id) else {
      throw RecordFailure(field: "", message: "the campaign service answered subscriber id '\(subscriber.id)', which is not a UUID")
    }
    return id
  }

  /// A record no subscriber matches: the request that creates its subscriber, or nil when none
  /// is to be made now (a push-only job links, it does not create; a dry run plans and counts it).
  func creation(_ record: RemoteRecord, remote: [String: JSONValue]) throws(RecordFailure) -> Herald_Campaign_V1_CreateSubscriberRequest? {
    guard job.pulls else { return nil }
    let request = try FieldWriter.create(from: remote, source: source)
    plan(record.id, "create", subscriber: "", fields: Array(remote.keys))
    guard !run.dryRun else {
      run.counts.created += 1
      return nil
    }
    return request
  }

  /// How many subscribers a page creates at once.
  static let parallelCreates = 8

  /// Creates the subscribers of a page's new records, `parallelCreates` at a time; returns each
  /// one's subscriber, or its refusal as that record's failure, by position in the page. Records
  /// that share an email or phone are created one after the other in page order (the later one
  /// then meets the earlier one's subscriber, as if each waited for the one before).
  func createSubscribers(_ creations: [Creation]) async throws -> [Int: Result<Herald_Campaign_V1_Subscriber, RecordFailure>] {
    var waves: [[Creation]] = []
    var waveOfKey: [String: Int] = [:]
    for creation in creations {
      let keys = [("email", creation.request.email), ("phone", creation.request.phone)].filter { !$0.1.isEmpty }.map {
        "\($0.0):\(SubscriberField.matchKey($0.1, field: $0.0))"
      }
      let wave = keys.compactMap { waveOfKey[$0].map { $0 + 1 } }.max() ?? 0
      for key in keys { waveOfKey[key] = wave }
      if wave == waves.count { waves.append([]) }
      waves[wave].append(creation)
    }
    let campaign = self.campaign
    var results: [Int: Result<Herald_Campaign_V1_Subscriber, RecordFailure>] = [:]
    for wave in waves {
      try await withThrowingTaskGroup(of: (Int, Result<Herald_Campaign_V1_Subscriber, RecordFailure>).self) { group in
        var next = wave.makeIterator()
        func start(_ creation: Creation) {
          group.addTask {
            do {
              return (creation.position, .success(try await campaign.createSubscriber(creation.request)))
            } catch let error as RPCError where error.code == .invalidArgument || error.code == .alreadyExists {
              return (creation.position, .failure(RecordFailure(field: error.field ?? "", message: error.message)))
            }
          }
        }
        for _ in 0..<Self.parallelCreates {
          guard let creation = next.next() else { break }
          start(creation)
        }
        while let (position, result) = try await group.next() {
          results[position] = result
          if let creation = next.next() { start(creation) }
        }
      }
    }
    return results
  }

  /// Syncs one record with its subscriber; returns its new link (nil when nothing is to be saved:
  /// a dry run).
  func sync(
    _ record: RemoteRecord, remote: [String: JSONValue], modified: String, link: RecordLink?,
    subscriber: Herald_Campaign_V1_Subscriber, pending: Set<String>, revive: Bool = false
  ) async throws -> (link: RecordLink, conflicts: [FoundConflict])? {
    guard subscriber.status != "erased" else {
      throw RecordFailure(field: "", message: "subscriber \(subscriber.id) was erased (GDPR): the record is not synced to it")
    }
    let subscriberID = try Self.subscriberID(subscriber)
    var update = Herald_Campaign_V1_UpdateSubscriberRequest()
    update.id = subscriber.id
    var attributes = JSONValue.parse(subscriber.attributesJson)?.object ?? [:]
    var changed: [String] = []
    var keepLocal = Set<String>()
    var pendingFields = Set<String>()
    var conflicts: [FoundConflict] = []
    let remoteTime = ISOTime.parse(modified)
    let localTime = subscriber.hasUpdatedAt ? subscriber.updatedAt.date : nil
    for mapping in mappings where !mapping.pushOnly {
      let field = mapping.subscriberField
      if pending.contains("\(record.id)/\(field)") {
        pendingFields.insert(field)
        continue
      }
      let state = FieldState(
        field: field, local: SubscriberField.local(subscriber, engagement: nil, field: field), remote: remote[field] ?? .null,
        lastLocal: link?.localValues[field], lastRemote: link?.remoteValues[field])
      let decision = ThreeWay.decide(state, policy: mapping.policy, remoteTime: remoteTime, localTime: localTime)
      var takeRemote = false
      switch decision {
      case .inSync: break
      case .takeRemote where !job.pulls: keepLocal.insert(field)  // a push-only job writes Herald's value back
      case .takeRemote: takeRemote = true
      case .keepLocal: keepLocal.insert(field)
      case .conflict(let winner):
        run.counts.conflicts += 1
        conflicts.append(
          FoundConflict(
            recordID: record.id, subscriberID: subscriberID, field: field, base: link?.localValues[field], local: state.local,
            remote: state.remote, policy: mapping.policy, resolution: winner))
        plan(record.id, "conflict", subscriber: subscriber.id, fields: [field])
        switch winner {
        case "remote" where !job.pulls: keepLocal.insert(field)
        case "remote": takeRemote = true
        case "local": keepLocal.insert(field)
        default: pendingFields.insert(field)
        }
      }
      if takeRemote {
        try FieldWriter.set(field, to: state.remote, in: &update, attributes: &attributes, source: source)
        changed.append(field)
      }
    }
    var current = subscriber
    if !changed.isEmpty {
      plan(record.id, "update", subscriber: subscriber.id, fields: changed)
      if !run.dryRun {
        do {
          current = try await campaign.updateSubscriber(update)
        } catch let error as RPCError where [.invalidArgument, .alreadyExists, .failedPrecondition].contains(error.code) {
          throw RecordFailure(field: error.field ?? changed.joined(separator: ","), message: error.message)
        }
      }
      run.counts.updated += 1
    } else {
      run.counts.unchanged += 1
    }
    if run.dryRun { return nil }
    // A record that came back after a reconciliation had archived its subscriber.
    if (link?.deleted == true || revive) && current.status == "archived" {
      var restore = Herald_Campaign_V1_UpdateSubscriberRequest()
      restore.id = current.id
      restore.status = "active"
      current = try await campaign.updateSubscriber(restore)
    }
    return (
      try snapshot(
        record, modified: modified, remote: remote, subscriber: current, keepLocal: keepLocal, pending: pendingFields, old: link),
      conflicts
    )
  }

  /// The link after a sync: both sides as they are now, except fields still to push (the local
  /// side keeps its old snapshot, so the push sees the change) and fields waiting for review.
  func snapshot(
    _ record: RemoteRecord, modified: String, remote: [String: JSONValue], subscriber: Herald_Campaign_V1_Subscriber,
    keepLocal: Set<String>, pending: Set<String>, old: RecordLink?
  ) throws(RecordFailure) -> RecordLink {
    let subscriberID = try Self.subscriberID(subscriber)
    var link =
      old
      ?? RecordLink(
        recordID: record.id, subscriberID: subscriberID, remoteModified: "", remoteValues: [:], localValues: [:], deleted: false)
    link.subscriberID = subscriberID
    link.remoteModified = modified
    link.deleted = false
    for mapping in mappings where !mapping.pushOnly && !pending.contains(mapping.subscriberField) {
      let field = mapping.subscriberField
      link.remoteValues[field] = remote[field] ?? .null
      if !keepLocal.contains(field) {
        link.localValues[field] = SubscriberField.local(subscriber, engagement: nil, field: field)
      } else if link.localValues[field] == nil {
        link.localValues[field] = .null
      }
    }
    return link
  }

  // MARK: - Deletes

  /// After a full read: linked records the table no longer has are soft-deleted (their
  /// subscribers archived), unless that is more than the job's cap.
  func reconcile() async throws {
    try await saveProgress(phase: "reconciling")
    let linked = try await store.linkedCount(of: jobID, on: connection)
    let missing = try await store.unseenLinks(of: jobID, sweep: run.sweepID, on: connection).filter {
      !run.dryRun || !seenInDryRun.contains($0.record)
    }
    guard !missing.isEmpty else { return }
    if job.maxDeletePercent < 100 && missing.count * 100 > job.maxDeletePercent * linked {
      let share = Double(missing.count * 1000 / max(linked, 1)) / 10
      throw RunAborted(
        description:
          "the run would soft-delete \(missing.count) of \(linked) linked records (\(share)%), more than max_delete_percent \(job.maxDeletePercent)%: nothing was deleted"
      )
    }
    for (record, subscriber) in missing {
      if shouldStop() { throw RunStopped() }
      plan(record, "soft_delete", subscriber: subscriber.lowercasedString, fields: [])
      run.counts.softDeleted += 1
      if run.dryRun { continue }
      var archive = Herald_Campaign_V1_UpdateSubscriberRequest()
      archive.id = subscriber.lowercasedString
      archive.status = "archived"
      do {
        _ = try await campaign.updateSubscriber(archive)
      } catch let error as RPCError where error.code == .notFound || error.code == .failedPrecondition {
        // Gone or erased locally: nothing to archive, the link still goes.
        logger.info("subscriber of a deleted record not archived", metadata: ["record": "\(record)", "error": "\(error.message)"])
      }
      try await store.markDeleted(record, job: jobID, on: connection)
    }
    try await saveProgress(phase: "reconciling")
  }

  // MARK: - Push

  /// Writes engagement (and, for two-way jobs, local changes) to the linked records.
  func push() async throws {
    let pushable = mappings.filter { $0.pushOnly || job.pushes }
    guard !pushable.isEmpty else { return }
    try await saveProgress(phase: "pushing")
    var after = ""
    while true {
      if shouldStop() { throw RunStopped() }
      let links = try await store.liveLinks(of: jobID, after: after, limit: 100, on: connection)
      guard let last = links.last else { return }
      after = last.recordID
      try await push(links)
    }
  }

  func push(_ links: [RecordLink]) async throws {
    var lookup = Herald_Campaign_V1_LookupSubscribersRequest()
    lookup.ids = links.map { $0.subscriberID.lowercasedString }
    let answer = try await campaign.lookupSubscribers(lookup)
    let subscribers = Dictionary(answer.subscribers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    let engagement = Dictionary(answer.engagement.map { ($0.subscriberID, $0) }, uniquingKeysWith: { a, _ in a })
    let pending = try await store.pendingFields(of: jobID, records: links.map(\.recordID), on: connection)
    var writes: [(id: String, fields: [String: JSONValue])] = []
    var updated: [RecordLink] = []
    for var link in links {
      let id = link.subscriberID.lowercasedString
      guard let subscriber = subscribers[id], subscriber.status != "erased" else { continue }
      var fields: [String: JSONValue] = [:]
      for mapping in mappings where !pending.contains("\(link.recordID)/\(mapping.subscriberField)") {
        let field = mapping.subscriberField
        let local = SubscriberField.local(subscriber, engagement: engagement[id], field: field)
        if mapping.pushOnly {
          guard link.remoteValues[field].map({ !SubscriberField.equivalent($0, local, field: field) }) ?? true else { continue }
        } else {
          // A field without a snapshot was mapped after the record was last read: the pull syncs it first.
          guard job.direction == .both || job.direction == .push, let last = link.localValues[field],
            !SubscriberField.equivalent(last, local, field: field)
          else { continue }
          link.localValues[field] = local
        }
        fields[mapping.fieldID] = FieldWriter.remote(local, for: mapping)
        link.remoteValues[field] = SubscriberField.remote(local, field: field)
      }
      guard !fields.isEmpty else { continue }
      plan(link.recordID, "push", subscriber: id, fields: mappings.filter { fields[$0.fieldID] != nil }.map(\.subscriberField))
      writes.append((link.recordID, fields))
      updated.append(link)
    }
    guard !writes.isEmpty else { return }
    if run.dryRun {
      run.counts.pushed += writes.count
      try await saveProgress(phase: "pushing")
      return
    }
    let outcome = try await connector.update(writes)
    let refused = Set(outcome.refused.map(\.position))
    for (position, reason) in outcome.refused {
      fail(writes[position].id, RecordFailure(field: "", message: "the table refused the push: \(reason)"))
    }
    let accepted = updated.enumerated().filter { !refused.contains($0.offset) }.map(\.element)
    run.counts.pushed += accepted.count
    let write = PageWrite(links: accepted, errors: errors, progress: progress(phase: "pushing"))
    try await store.commitPage(write, job: jobID, on: connection)
    errors = []
  }
}
