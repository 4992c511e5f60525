import Foundation
import HeraldCore
import HeraldServerKit

/// How the campaign process's background work behaves; from `HERALD_CAMPAIGN_*` variables.
package struct CampaignSettings: Sendable, Equatable {
  /// Outbox relay loops per process: chunks of one campaign go out in parallel (one more than two
  /// cores, so a chunk is being read and rendered while others wait on delivery).
  package var relayWorkers = 3
  /// How often the scheduler looks for scheduled campaigns that are due.
  package var schedulerInterval: Duration = .seconds(1)
  /// Where recipients reach the gateway's public routes (unsubscribe links), without a trailing
  /// slash: HERALD_PUBLIC_URL.
  package var publicURL = "http://127.0.0.1:8080"
  /// Signs unsubscribe links (a key derived from HERALD_SECRETS_KEY); without a key no e-mail
  /// campaign can be sent (`CampaignStore.optOutProblem`).
  package var secrets = SecretBox.none
  /// When a sending campaign pauses itself for its complaints or bounces.
  package var deliverabilityGuard = DeliverabilityGuard()
  /// The currency and attribution window of conversions: HERALD_CURRENCY, HERALD_ATTRIBUTION_WINDOW.
  package var results = ResultsSettings()
  /// The journey scheduler and trigger processor: HERALD_JOURNEY_*.
  package var journeys = JourneySettings()

  package init() {}

  package static func load(_ settings: Settings) throws -> CampaignSettings {
    var result = CampaignSettings()
    result.relayWorkers = try settings.int("HERALD_CAMPAIGN_RELAY_WORKERS", default: result.relayWorkers, range: 0...64)
    result.schedulerInterval = try settings.duration("HERALD_CAMPAIGN_SCHEDULER_INTERVAL", default: result.schedulerInterval)
    result.publicURL = try settings.publicURL() ?? result.publicURL
    result.secrets = try SecretBox(settings.optionalString(SecretBox.variable))
    result.deliverabilityGuard = try DeliverabilityGuard.load(settings)
    result.results = try ResultsSettings.load(settings)
    result.journeys = try JourneySettings.load(settings)
    return result
  }
}
