import Foundation
import GRPCCore
import HeraldCore
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import Logging
import Metrics
import SwiftProtobuf

/// The bulk import over a client stream (SPEC §2): per-row errors, valid rows kept. The request
/// checks its own strings (`ChecksOwnStrings`): a row holding NUL is one row error, not a refused
/// stream. Metric: `herald_campaign_imported_rows_total{outcome}` (`created`, `updated`,
/// `existing`, `failed`).
extension CampaignService {
  package func importSubscribers(
    request: RPCAsyncSequence<Herald_Campaign_V1_ImportSubscribersRequest, any Error>, context: ServerContext
  ) async throws -> Herald_Campaign_V1_ImportSubscribersResponse {
    let importer = SubscriberImporter(store: store)
    var response = Herald_Campaign_V1_ImportSubscribersResponse()
    var options: SubscriberImporter.Options?
    var pending: [SubscriberImporter.Row] = []

    func count(_ outcome: String, _ rows: Int = 1) {
      Counter(label: "herald_campaign_imported_rows_total", dimensions: [("outcome", outcome)]).increment(by: rows)
    }
    func report(_ row: Int64, _ field: String, _ message: String) {
      response.failed += 1
      count("failed")
      guard response.errors.count < SubscriberImporter.maxReportedErrors else { return }
      response.errors.append(
        .with {
          $0.row = row
          $0.field = field
          $0.message = message
        })
    }
    func record(_ rows: [SubscriberImporter.Row], _ outcomes: [SubscriberImporter.Outcome]) {
      var written = (created: 0, updated: 0, existing: 0)
      for (row, outcome) in zip(rows, outcomes) {
        switch outcome {
        case .created: written.created += 1
        case .updated: written.updated += 1
        case .existing: written.existing += 1
        case .failed(let field, let message): report(row.number, field, message)
        }
      }
      response.created += Int64(written.created)
      response.updated += Int64(written.updated)
      response.existing += Int64(written.existing)
      for (outcome, rows) in [("created", written.created), ("updated", written.updated), ("existing", written.existing)] where rows > 0 {
        count(outcome, rows)
      }
    }
    // One chunk is written while the next is read and checked; chunks are written one after the
    // other, in order (a row sees what the rows before it wrote).
    var analyzed = false
    var writing: Task<(rows: [SubscriberImporter.Row], outcomes: [SubscriberImporter.Outcome]), any Error>?
    func flush() async throws {
      if let previous = writing {
        writing = nil
        let (rows, outcomes) = try await previous.value
        record(rows, outcomes)
        if !analyzed {
          analyzed = true
          do {
            try await store.analyzeSubscribersIfNeverAnalyzed()
          } catch {
            // Only the speed of this import depends on it.
            store.logger.warning(
              "could not gather the subscribers table's statistics", metadata: ["error": "\(error.logDescription)"])
          }
        }
      }
      guard let options, !pending.isEmpty else { return }
      let rows = pending
      writing = Task { (rows, try await importer.write(rows, options: options)) }
      pending.removeAll(keepingCapacity: true)
    }

    func readAndWrite() async throws {
      for try await message in request {
        let checked: SubscriberImporter.Options
        if let options {
          checked = options
        } else {
          checked = try await importer.options(message.options)
          options = checked
        }
        for row in message.rows {
          switch SubscriberImporter.validate(row, options: checked) {
          case .success(let valid): pending.append(valid)
          case .failure(let error): report(row.row, error.field, error.message)
          }
          if pending.count >= SubscriberImporter.chunkSize { try await flush() }
        }
      }
      try await flush()
      try await flush()  // the last chunk's outcome
    }

    do {
      try await readAndWrite()
    } catch {
      // A chunk being written when the stream failed ends before the call does (committed or
      // not), never after it.
      _ = try? await writing?.value
      throw error
    }
    // Errors are reported in row order even when chunks interleave checks and writes.
    response.errors.sort { $0.row < $1.row }
    return response
  }
}
