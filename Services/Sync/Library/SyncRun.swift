import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import PostgresNIO
import SwiftProtobuf

package typealias CampaignClient = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

/// A run that stopped on purpose (the deletion cap, a mapping the table does not have): the run
/// is recorded as aborted with this message and nothing more is changed.
struct RunAborted: Error, CustomStringConvertible {
  var description: String
}

/// The service is stopping: the run ends between two pages, as interrupted, resumable.
struct RunStopped: Error {}

/// A job's mappings resolved against the remote table's schema.
struct ResolvedMapping: Sendable {
  var subscriberField: String
  var fieldID: String
  var fieldName: String
  var fieldType: String
  var policy: ConflictPolicy

  var pushOnly: Bool { SubscriberField.pushOnly.contains(subscriberField) }
}

enum MappingResolver {
  /// Checks the job's mappings against the table (SPEC §5: at the start of each run); the error
  /// names the mapping and lists the table's fields.
  static func resolve(_ job: SyncJob, fields: [RemoteField]) throws -> (mappings: [ResolvedMapping], modified: RemoteField?) {
    let names = fields.map(\.name).joined(separator: ", ")
    func find(_ key: String) -> RemoteField? { fields.first { $0.id == key || $0.name == key } }
    var resolved: [ResolvedMapping] = []
    for (index, mapping) in job.mappings.enumerated() {
      guard let field = find(mapping.externalField) else {
        throw RunAborted(
          description: "mappings[\(index)].external_field '\(mapping.externalField)' is not a field of table \(job.tableID) (its fields: \(names))")
      }
      let local = mapping.subscriberField
      if local.hasSuffix("_subscribed") && field.type != "checkbox" {
        throw RunAborted(description: "mappings[\(index)]: \(local) needs a checkbox field, '\(field.name)' is \(field.type)")
      }
      let computed = ["lastModifiedTime", "createdTime", "formula", "autoNumber", "rollup", "count", "lookup"].contains(field.type)
      if computed && (SubscriberField.pushOnly.contains(local) || job.direction != .pull) {
        throw RunAborted(description: "mappings[\(index)]: '\(field.name)' is a computed \(field.type) field and cannot be written")
      }
      resolved.append(
        ResolvedMapping(
          subscriberField: local, fieldID: field.id, fieldName: field.name, fieldType: field.type,
          policy: mapping.policy ?? job.defaultPolicy))
    }
    var modified: RemoteField?
    if !job.modifiedField.isEmpty {
      guard let field = find(job.modifiedField) else {
        throw RunAborted(description: "modified_field '\(job.modifiedField)' is not a field of table \(job.tableID) (its fields: \(names))")
      }
      guard ["lastModifiedTime", "dateTime"].contains(field.type) else {
        throw RunAborted(description: "modified_field '\(field.name)' is a \(field.type) field, not a last-modified time")
      }
      modified = field
    }
    return (resolved, modified)
  }
}

/// Turns values into writes: a subscriber update from remote values, remote fields from local ones.
enum FieldWriter {
  /// Sets `field` to `value` in an update (attributes are merged into `attributes`).
  static func set(
    _ field: String, to value: JSONValue, in request: inout Herald_Campaign_V1_UpdateSubscriberRequest,
    attributes: inout [String: JSONValue], source: String
  ) throws(RecordFailure) {
    func text() throws(RecordFailure) -> String {
      switch value {
      case .null: return ""
      case .string(let text): return text
      case .number(let number): return Int64(exactly: number).map(String.init) ?? String(number)
      default: throw RecordFailure(field: field, message: "a \(value.typeName) cannot be a subscriber's \(field)")
      }
    }
    switch field {
    case "email": request.email = try text()
    case "phone": request.phone = try text()
    case "first_name": request.firstName = try text()
    case "last_name": request.lastName = try text()
    case "email_subscribed", "sms_subscribed":
      guard case .bool(let subscribed) = value else {
        throw RecordFailure(field: field, message: "\(field) needs a checkbox (true or false), got a \(value.typeName)")
      }
      var consent = Herald_Campaign_V1_ConsentInput()
      consent.subscribed = subscribed
      consent.source = source
      if field == "email_subscribed" { request.emailConsent = consent } else { request.smsConsent = consent }
    default:
      guard let name = SubscriberField.attribute(field) else { return }
      attributes[name] = value == .null ? nil : value
      request.attributesJson = RunStore.json(JSONValue.object(attributes))
    }
  }

  /// A new subscriber from remote values.
  static func create(from values: [String: JSONValue], source: String) throws(RecordFailure) -> Herald_Campaign_V1_CreateSubscriberRequest {
    var update = Herald_Campaign_V1_UpdateSubscriberRequest()
    var attributes: [String: JSONValue] = [:]
    for (field, value) in values.sorted(by: { $0.key < $1.key }) where SubscriberField.isValid(field) {
      try set(field, to: value, in: &update, attributes: &attributes, source: source)
    }
    guard !update.email.isEmpty || !update.phone.isEmpty else {
      throw RecordFailure(field: "email", message: "the record has neither an email nor a phone: no subscriber can be made of it")
    }
    var request = Herald_Campaign_V1_CreateSubscriberRequest()
    request.email = update.email
    request.phone = update.phone
    request.firstName = update.firstName
    request.lastName = update.lastName
    request.attributesJson = update.hasAttributesJson ? update.attributesJson : "{}"
    if update.hasEmailConsent, update.emailConsent.subscribed { request.emailConsent = update.emailConsent }
    if update.hasSmsConsent, update.smsConsent.subscribed { request.smsConsent = update.smsConsent }
    return request
  }

  /// A local value as the remote field takes it.
  static func remote(_ value: JSONValue, for mapping: ResolvedMapping) -> JSONValue {
    if mapping.fieldType == "checkbox", value == .null { return .bool(false) }
    return value
  }
}

/// A problem with one record (its field and the reason); the record is skipped and reported.
struct RecordFailure: Error {
  var field: String
  var message: String
}

/// One run of one job, on the connection that holds the job's lock.
final class SyncExecution {
  let job: SyncJob
  let jobID: UUID
  var run: SyncRunRecord
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
  var source: String { "sync:\(job.name)" }

  init(
    job: SyncJob, run: SyncRunRecord, connection: PostgresConnection, campaign: CampaignClient, connector: AirtableClient,
    shouldStop: @escaping @Sendable () -> Bool, logger: Logger
  ) {
    self.job = job
    self.jobID = job.id!
    self.run = run
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
    try await progress(phase: phase).save(on: connection, logger: logger)
  }

  /// The run's progress as it stands (counts brought up to date with the connector's).
  func progress(phase: String, checkpoint: String? = nil) -> RunProgress {
    run.phase = phase
    run.counts.apiCalls = connector.stats.calls
    run.counts.rateLimited = connector.stats.rateLimited
    run.counts.cursorRestarts = connector.stats.iteratorRestarts
    return RunProgress(
      run: run.id, phase: phase, checkpoint: run.dryRun ? "" : (checkpoint ?? run.checkpoint), counts: run.counts, planned: run.planned)
  }

  func fail(_ recordID: String, _ failure: RecordFailure) {
    run.counts.errors += 1
    errors.append(RecordError(recordID: recordID, field: failure.field, message: failure.message))
  }

  func plan(_ recordID: String, _ action: String, subscriber: String, fields: [String]) {
    guard run.dryRun, run.planned.count < RunStore.maxErrors else { return }
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

  /// Applies one page, then saves its links, conflicts and errors with the checkpoint in one
  /// transaction: a crash before that re-reads the page, after it never does.
  func apply(_ page: [RemoteRecord]) async throws {
    run.counts.recordsRead += page.count
    if run.dryRun { seenInDryRun.formUnion(page.map(\.id)) }
    let links = try await RunStore.links(job: jobID, records: page.map(\.id), connection: connection, logger: logger)
    let pending = try await RunStore.pendingFields(job: jobID, records: page.map(\.id), connection: connection, logger: logger)
    let synced = mappings.filter { !$0.pushOnly }

    // The subscribers already linked, and those an unlinked record may be (same email or phone).
    var lookup = Herald_Campaign_V1_LookupSubscribersRequest()
    lookup.ids = links.values.map { $0.subscriberID.lowercasedString }
    for record in page where links[record.id] == nil {
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
    for try await (subscriber, record, deleted) in try await connection.query(
      """
      SELECT subscriber_id, record_id, deleted_at IS NOT NULL FROM sync.records
      WHERE job_id = \(jobID) AND subscriber_id = ANY(\(unlinked)::uuid[])
      """, logger: logger
    ).decode((UUID, String, Bool).self) {
      if deleted { revived.insert(subscriber) } else { linkedTo[subscriber] = record }
    }

    var saved: [RecordLink] = []
    var seen: [String] = []
    var conflicts: [FoundConflict] = []
    var lastModified = ""
    for record in page {
      let modified = modifiedField.flatMap { record.fields[$0.id]?.stringValue } ?? ""
      if modified > lastModified { lastModified = modified }
      let link = links[record.id]
      if let link, !modified.isEmpty, link.remoteModified == modified, !link.deleted,
        synced.allSatisfy({ link.remoteValues[$0.subscriberField] != nil })
      {
        // Read again (overlap window, restarted listing): applied already.
        run.counts.duplicates += 1
        seen.append(record.id)
        continue
      }
      var remote: [String: JSONValue] = [:]
      for mapping in synced { remote[mapping.subscriberField] = SubscriberField.remote(record.fields[mapping.fieldID], field: mapping.subscriberField) }
      var subscriber = link.flatMap { byID[$0.subscriberID.lowercasedString] }
      if subscriber == nil {
        for key in SubscriberField.keys {
          guard case .string(let value) = remote[key] ?? .null else { continue }
          let normal = key == "email" ? value.trimmingCharacters(in: .whitespaces).lowercased() : value.filter { !" -.()".contains($0) }
          if let match = byKey["\(key):\(normal)"] {
            subscriber = match
            break
          }
        }
      }
      do {
        if link == nil, let subscriber, let id = UUID(text: subscriber.id) {
          if let other = linkedTo[id], other != record.id {
            throw RecordFailure(
              field: "email", message: "subscriber \(subscriber.id) is already synced with record \(other); this record has the same email or phone")
          }
          linkedTo[id] = record.id
        }
        let revive = subscriber.flatMap { UUID(text: $0.id) }.map(revived.contains) ?? false
        if let outcome = try await sync(
          record, remote: remote, modified: modified, link: link, subscriber: subscriber, pending: pending, revive: revive)
        {
          saved.append(outcome.link)
          conflicts += outcome.conflicts
        }
      } catch let failure as RecordFailure {
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
    let (jobID, logger, sweep, full, runID, errors) = (jobID, logger, run.sweepID, run.full, run.id, errors)
    let progress = progress(phase: run.phase, checkpoint: checkpoint)
    try await connection.withTransaction(logger: logger) { connection in
      try await RunStore.save(links: saved, job: jobID, sweep: full ? sweep : nil, connection: connection, logger: logger)
      if full { try await RunStore.markSeen(records: seen, job: jobID, sweep: sweep, connection: connection, logger: logger) }
      try await RunStore.save(conflicts: conflicts, job: jobID, run: runID, connection: connection, logger: logger)
      try await RunStore.save(errors: errors, run: runID, connection: connection, logger: logger)
      try await progress.save(on: connection, logger: logger)
    }
    // Only once the page is committed does the run move past it.
    run.checkpoint = checkpoint
    self.errors = []
  }

  /// Syncs one record; returns its new link (nil when nothing is to be saved: a dry run, or a
  /// push-only job's record that matches no subscriber).
  func sync(
    _ record: RemoteRecord, remote: [String: JSONValue], modified: String, link: RecordLink?,
    subscriber: Herald_Campaign_V1_Subscriber?, pending: Set<String>, revive: Bool = false
  ) async throws -> (link: RecordLink, conflicts: [FoundConflict])? {
    guard let subscriber else {
      guard job.pulls else { return nil }  // a push-only job links, it does not create
      let request = try FieldWriter.create(from: remote, source: source)
      plan(record.id, "create", subscriber: "", fields: Array(remote.keys))
      if run.dryRun {
        run.counts.created += 1
        return nil
      }
      let created: Herald_Campaign_V1_Subscriber
      do {
        created = try await campaign.createSubscriber(request)
      } catch let error as RPCError where error.code == .invalidArgument || error.code == .alreadyExists {
        throw RecordFailure(field: error.field ?? "", message: error.message)
      }
      run.counts.created += 1
      return (snapshot(record, modified: modified, remote: remote, subscriber: created, keepLocal: [], pending: [], old: nil), [])
    }
    guard subscriber.status != "erased" else {
      throw RecordFailure(field: "", message: "subscriber \(subscriber.id) was erased (GDPR): the record is not synced to it")
    }
    let subscriberID = UUID(text: subscriber.id)!
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
      snapshot(record, modified: modified, remote: remote, subscriber: current, keepLocal: keepLocal, pending: pendingFields, old: link),
      conflicts
    )
  }

  /// The link after a sync: both sides as they are now, except fields still to push (the local
  /// side keeps its old snapshot, so the push sees the change) and fields waiting for review.
  func snapshot(
    _ record: RemoteRecord, modified: String, remote: [String: JSONValue], subscriber: Herald_Campaign_V1_Subscriber,
    keepLocal: Set<String>, pending: Set<String>, old: RecordLink?
  ) -> RecordLink {
    var link =
      old
      ?? RecordLink(
        recordID: record.id, subscriberID: UUID(text: subscriber.id)!, remoteModified: "", remoteValues: [:], localValues: [:],
        deleted: false)
    link.subscriberID = UUID(text: subscriber.id)!
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
    let linked = try await (try await connection.query(
      "SELECT count(*)::int FROM sync.records WHERE job_id = \(jobID) AND deleted_at IS NULL", logger: logger
    )).decode(Int.self).elements().first ?? 0
    var missing: [(record: String, subscriber: UUID)] = []
    for try await (record, subscriber) in try await connection.query(
      """
      SELECT record_id, subscriber_id FROM sync.records
      WHERE job_id = \(jobID) AND deleted_at IS NULL AND last_seen_sweep IS DISTINCT FROM \(run.sweepID)
      ORDER BY record_id
      """, logger: logger
    ).decode((String, UUID).self) {
      if !run.dryRun || !seenInDryRun.contains(record) { missing.append((record, subscriber)) }
    }
    guard !missing.isEmpty else { return }
    if job.maxDeletePercent < 100 && missing.count * 100 > job.maxDeletePercent * linked {
      let share = Double(missing.count * 1000 / max(linked, 1)) / 10
      throw RunAborted(
        description:
          "the run would soft-delete \(missing.count) of \(linked) linked records (\(share)%), more than max_delete_percent \(job.maxDeletePercent)%: nothing was deleted")
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
      try await connection.query(
        "UPDATE sync.records SET deleted_at = now() WHERE job_id = \(jobID) AND record_id = \(record)", logger: logger)
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
      var links: [RecordLink] = []
      for try await (record, subscriber, modified, remote, local) in try await connection.query(
        """
        SELECT record_id, subscriber_id, remote_modified, remote_values::text, local_values::text FROM sync.records
        WHERE job_id = \(jobID) AND deleted_at IS NULL AND record_id > \(after) ORDER BY record_id LIMIT 100
        """, logger: logger
      ).decode((String, UUID, String, String, String).self) {
        links.append(
          RecordLink(
            recordID: record, subscriberID: subscriber, remoteModified: modified, remoteValues: JSONValue.parse(remote)?.object ?? [:],
            localValues: JSONValue.parse(local)?.object ?? [:], deleted: false))
      }
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
    let pending = try await RunStore.pendingFields(job: jobID, records: links.map(\.recordID), connection: connection, logger: logger)
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
    let (jobID, logger, runID, errors) = (jobID, logger, run.id, errors)
    let progress = progress(phase: "pushing")
    try await connection.withTransaction(logger: logger) { connection in
      try await RunStore.save(links: accepted, job: jobID, sweep: nil, connection: connection, logger: logger)
      try await RunStore.save(errors: errors, run: runID, connection: connection, logger: logger)
      try await progress.save(on: connection, logger: logger)
    }
    self.errors = []
  }
}
