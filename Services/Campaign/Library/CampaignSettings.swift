import HeraldCore

/// How the campaign process's background work behaves; from `HERALD_CAMPAIGN_*` variables.
package struct CampaignSettings: Sendable, Equatable {
  /// Outbox relay loops per process: chunks of one campaign go out in parallel (one more than two
  /// cores, so a chunk is being read and rendered while others wait on delivery).
  package var relayWorkers = 3
  /// How often the scheduler looks for scheduled campaigns that are due.
  package var schedulerInterval: Duration = .seconds(1)

  package init() {}

  package static func load(_ settings: Settings) throws -> CampaignSettings {
    var result = CampaignSettings()
    result.relayWorkers = try settings.int("HERALD_CAMPAIGN_RELAY_WORKERS", default: result.relayWorkers, range: 0...64)
    result.schedulerInterval = try settings.duration("HERALD_CAMPAIGN_SCHEDULER_INTERVAL", default: result.schedulerInterval)
    return result
  }
}
