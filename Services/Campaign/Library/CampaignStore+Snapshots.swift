import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO

/// A campaign's counters at one moment, per variant (`""` is the whole campaign).
package struct SnapshotRecord: Sendable, Equatable {
  package var variant: String
  package var takenAt: Date
  package var resolution: String
  package var counters: ResultCounters
}

/// Metric snapshots (SPEC §13): one statement per tick snapshots every campaign that is due —
/// every 5 minutes while it sends, hourly while it is paused and for 30 days after it finished,
/// then daily for a year (a campaign never started has none) — per variant and for the whole
/// campaign, from its daily rollup; a retention rule thins old points; and the series are read
/// back for charts.
extension CampaignStore {
  /// The snapshot's counter columns, in `ResultCounters.assign` order, each with the rollup's
  /// status it counts (cost and revenue: the cells' cost and value, whatever their status).
  static let counters: [(column: String, status: String?)] = [
    ("queued", "queued"), ("sent", "sent"), ("delivered", "delivered"), ("bounced", "bounced"),
    ("soft_bounced", "soft_bounced"), ("failed", "failed"), ("opened", "opened"), ("unique_opened", "unique_opened"),
    ("clicked", "clicked"), ("unique_clicked", "unique_clicked"), ("replied", "replied"), ("unsubscribed", "unsubscribed"),
    ("complained", "complained"), ("cost_cents", nil), ("conversions", "converted"), ("revenue_cents", nil),
  ]

  static let counterColumns = counters.map(\.column)

  /// The counters of the rollup `d`, by status, as snapshot columns.
  package static let snapshotCounters = counters.map { column, status in
    let sum =
      switch (column, status) {
      case (_, let status?): "sum(d.events) FILTER (WHERE d.status = '\(status)')"
      case ("cost_cents", nil): "sum(d.cost_cents)"
      default: "sum(d.value_cents)"
      }
    return "coalesce(\(sum), 0)::int8 AS \(column)"
  }.joined(separator: ",\n")

  /// Snapshots every campaign due at `now` in one statement; returns the campaigns and rows
  /// written. A campaign is due when it has no snapshot yet in the current 5-minute (sending),
  /// hour (paused, or finished up to 30 days ago) or day (up to a year ago) bin; campaigns another
  /// replica is snapshotting, or whose row a transition holds, are left to the next tick.
  package func takeSnapshots(at now: Date) async throws -> (campaigns: Int, rows: Int) {
    let columns = Self.counterColumns.joined(separator: ", ")
    let selected = Self.counterColumns.map { "coalesce(st.\($0), 0)" }.joined(separator: ", ")
    let row = try await client.query(
      """
      WITH due AS (
        SELECT c.id, c.audience_count,
          CASE WHEN c.status = 'sending' THEN '5m'
            WHEN c.status = 'paused' OR c.finished_at > \(now)::timestamptz - interval '30 days' THEN '1h' ELSE '1d' END AS resolution
        FROM campaign.campaigns c
        WHERE c.started_at IS NOT NULL AND (
          (c.status = 'sending' AND coalesce(c.last_snapshot_at, '-infinity') < date_bin('5 minutes', \(now)::timestamptz, 'epoch'))
          OR ((c.status = 'paused' OR (c.status IN ('sent', 'cancelled', 'failed')
              AND c.finished_at > \(now)::timestamptz - interval '30 days'))
            AND coalesce(c.last_snapshot_at, '-infinity') < date_bin('1 hour', \(now)::timestamptz, 'epoch'))
          OR (c.status IN ('sent', 'cancelled', 'failed') AND c.finished_at > \(now)::timestamptz - interval '365 days'
            AND c.finished_at <= \(now)::timestamptz - interval '30 days'
            AND coalesce(c.last_snapshot_at, '-infinity') < date_bin('1 day', \(now)::timestamptz, 'epoch')))
        FOR UPDATE SKIP LOCKED
      ), stats AS (
        SELECT d.campaign_id, CASE WHEN grouping(d.variant) = 1 THEN '' ELSE d.variant END AS variant,
          \(unescaped: Self.snapshotCounters)
        FROM campaign.campaign_daily_stats d WHERE d.campaign_id IN (SELECT id FROM due)
        GROUP BY GROUPING SETS ((d.campaign_id, d.variant), (d.campaign_id))
      ), cells AS (
        SELECT v.campaign_id, v.name AS variant, v.recipients FROM campaign.campaign_variants v
        WHERE v.campaign_id IN (SELECT id FROM due)
        UNION ALL
        SELECT v.campaign_id, '', sum(v.recipients)::int8 FROM campaign.campaign_variants v
        WHERE v.campaign_id IN (SELECT id FROM due) GROUP BY v.campaign_id
      ), written AS (
        INSERT INTO campaign.metric_snapshots (campaign_id, variant, taken_at, resolution, audience, recipients, \(unescaped: columns))
        SELECT x.campaign_id, x.variant, \(now), due.resolution, due.audience_count, x.recipients, \(unescaped: selected)
        FROM cells x JOIN due ON due.id = x.campaign_id
        LEFT JOIN stats st ON st.campaign_id = x.campaign_id AND st.variant = x.variant
        ON CONFLICT (campaign_id, variant, taken_at) DO NOTHING
        RETURNING campaign_id
      ), marked AS (
        UPDATE campaign.campaigns c SET last_snapshot_at = \(now) FROM due WHERE c.id = due.id
      )
      SELECT count(DISTINCT campaign_id)::int8, count(*)::int8 FROM written
      """, logger: logger
    ).decode((Int64, Int64).self).elements().first
    return (Int(row?.0 ?? 0), Int(row?.1 ?? 0))
  }

  /// The retention rule at `now`: 5-minute points older than 30 days are thinned to the last of
  /// each hour, hourly points older than a year to the last of each day; the kept one takes the
  /// coarser resolution. Only whole bins before the cutoff are thinned, each over its points of
  /// both resolutions (a bin thinned before keeps one coarse point, which a later fine one in it
  /// would not outrank), so every bin ends with exactly its last point. Returns how many were
  /// deleted.
  @discardableResult
  package func thinSnapshots(at now: Date) async throws -> Int {
    var deleted = 0
    for (fine, coarse, bin, age) in [("5m", "1h", "1 hour", "30 days"), ("1h", "1d", "1 day", "365 days")] {
      let count = try await transaction { connection in
        let count =
          try await connection.query(
            """
            WITH cutoff AS (
              SELECT date_bin(\(bin)::interval, \(now)::timestamptz - \(age)::interval, 'epoch') AS at
            ), bins AS (
              SELECT DISTINCT s.campaign_id, s.variant, date_bin(\(bin)::interval, s.taken_at, 'epoch') AS start
              FROM campaign.metric_snapshots s, cutoff WHERE s.resolution = \(fine) AND s.taken_at < cutoff.at
            ), ranked AS (
              SELECT s.campaign_id, s.variant, s.taken_at,
                row_number() OVER (PARTITION BY s.campaign_id, s.variant, b.start ORDER BY s.taken_at DESC) AS n
              FROM bins b JOIN campaign.metric_snapshots s ON s.campaign_id = b.campaign_id AND s.variant = b.variant
                AND s.taken_at >= b.start AND s.taken_at < b.start + \(bin)::interval
              WHERE s.resolution IN (\(fine), \(coarse))
            ), gone AS (
              DELETE FROM campaign.metric_snapshots s USING ranked r
              WHERE r.n > 1 AND s.campaign_id = r.campaign_id AND s.variant = r.variant AND s.taken_at = r.taken_at
              RETURNING 1
            )
            SELECT count(*)::int8 FROM gone
            """, logger: logger
          ).decode(Int64.self).elements().first ?? 0
        try await connection.query(
          """
          UPDATE campaign.metric_snapshots SET resolution = \(coarse)
          WHERE resolution = \(fine) AND taken_at < date_bin(\(bin)::interval, \(now)::timestamptz - \(age)::interval, 'epoch')
          """, logger: logger)
        return Int(count)
      }
      deleted += count
    }
    return deleted
  }

  /// A campaign's snapshots from `from` up to `to` (inclusive), the last of each `step` (seconds)
  /// per variant, oldest first.
  package func snapshots(of campaign: UUID, from: Date, to: Date, stepSeconds step: Int64) async throws -> [SnapshotRecord] {
    let columns = Self.counterColumns.joined(separator: ", ")
    var result: [SnapshotRecord] = []
    let rows = try await client.query(
      """
      SELECT DISTINCT ON (variant, bin) variant, taken_at, resolution, audience, recipients, \(unescaped: columns)
      FROM (
        SELECT s.*, date_bin(make_interval(secs => \(step)), s.taken_at, \(from)) AS bin FROM campaign.metric_snapshots s
        WHERE s.campaign_id = \(campaign) AND s.taken_at BETWEEN \(from) AND \(to)
      ) x
      ORDER BY variant, bin, taken_at DESC
      """, logger: logger)
    for try await row in rows {
      let cells = row.makeRandomAccess()
      var counters = ResultCounters()
      counters.audience = try cells["audience"].decode(Int64.self)
      counters.recipients = try cells["recipients"].decode(Int64.self)
      counters.assign(try Self.counterColumns.map { try cells[$0].decode(Int64.self) })
      result.append(
        SnapshotRecord(
          variant: try cells["variant"].decode(String.self), takenAt: try cells["taken_at"].decode(Date.self),
          resolution: try cells["resolution"].decode(String.self), counters: counters))
    }
    return result.sorted { ($0.variant, $0.takenAt) < ($1.variant, $1.takenAt) }
  }
}

extension ResultCounters {
  /// Sets the counters in `CampaignStore.counterColumns` order.
  mutating func assign(_ values: [Int64]) {
    (queued, sent, delivered, bounced, softBounced, failed, opened, uniqueOpened) = (
      values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7]
    )
    (clicked, uniqueClicked, replied, unsubscribed, complained, costCents, conversions, revenueCents) = (
      values[8], values[9], values[10], values[11], values[12], values[13], values[14], values[15]
    )
  }

  /// Adds a rollup cell: its events under its status, and its cost and value.
  package mutating func add(_ cell: DailyStatRecord) {
    let events = cell.events
    switch cell.status {
    case "queued": queued += events
    case "sent": sent += events
    case "delivered": delivered += events
    case "bounced": bounced += events
    case "soft_bounced": softBounced += events
    case "failed": failed += events
    case "opened": opened += events
    case "unique_opened": uniqueOpened += events
    case "clicked": clicked += events
    case "unique_clicked": uniqueClicked += events
    case "replied": replied += events
    case "unsubscribed": unsubscribed += events
    case "complained": complained += events
    case "converted": conversions += events
    case "machine_opened": machineOpened += events
    case "machine_clicked": machineClicked += events
    default: break
    }
    costCents += cell.costCents
    revenueCents += cell.valueCents
  }
}
