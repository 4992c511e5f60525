import Foundation
import GRPCCore
import HeraldCore
import HeraldProtos
import HeraldServerKit
import SwiftProtobuf

/// Campaign results (SPEC §13): metric series from the snapshots, conversions and their
/// attribution, and an operator's pick of an A/B test's winner. Every statement is the store's.
extension CampaignService {
  /// The steps a series may take, smallest first, in seconds.
  static let metricSteps: [(name: String, seconds: Int64)] = [
    ("5m", 300), ("15m", 900), ("1h", 3_600), ("6h", 21_600), ("1d", 86_400), ("7d", 604_800),
  ]
  static let maxMetricPoints: Int64 = 2_000

  package func getCampaignMetrics(
    request: Herald_Campaign_V1_GetCampaignMetricsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_CampaignMetrics {
    let id = try Self.uuid(request.campaignID, field: "campaign_id")
    let campaign = try await store.campaign(id: id, field: "campaign_id")
    let to = request.hasTo ? try RPCError.date(request.to, field: "to") : Date()
    let from = request.hasFrom ? try RPCError.date(request.from, field: "from") : (campaign.startedAt ?? campaign.createdAt)
    guard from < to else {
      throw RPCError.field(
        request.hasFrom ? "from" : "to", .invalidArgument,
        "from (\(ISOTime.format(from))) must be before to (\(ISOTime.format(to)))")
    }
    let span = Int64(to.timeIntervalSince(from).rounded(.up))
    let step: (name: String, seconds: Int64)
    if request.step.isEmpty {
      step = Self.metricSteps.first { span / $0.seconds < 500 } ?? Self.metricSteps[Self.metricSteps.count - 1]
    } else {
      guard let named = Self.metricSteps.first(where: { $0.name == request.step }) else {
        throw RPCError.field(
          "step", .invalidArgument, "step '\(request.step)' must be one of \(Self.metricSteps.map(\.name).joined(separator: ", "))")
      }
      step = named
      guard span / step.seconds < Self.maxMetricPoints else {
        throw RPCError.field(
          "step", .invalidArgument,
          "from..to at step \(step.name) would be \(span / step.seconds + 1) points; at most \(Self.maxMetricPoints): give a larger step or a shorter range"
        )
      }
    }
    let snapshots = try await store.snapshots(of: id, from: from, to: to, stepSeconds: step.seconds)
    var response = Herald_Campaign_V1_CampaignMetrics()
    response.campaignID = id.lowercasedString
    response.from = Google_Protobuf_Timestamp(date: from)
    response.to = Google_Protobuf_Timestamp(date: to)
    response.step = step.name
    response.currency = results.currency
    let grouped = Dictionary(grouping: snapshots, by: \.variant)
    let known = campaign.variants.map(\.name)
    let order = [""] + known + grouped.keys.filter { !$0.isEmpty && !known.contains($0) }.sorted()
    response.series = order.map { variant in
      .with {
        $0.variant = variant
        $0.points = (grouped[variant] ?? []).map { snapshot in
          .with {
            $0.at = Google_Protobuf_Timestamp(date: snapshot.takenAt)
            $0.counters = Self.message(snapshot.counters)
            $0.rates = Self.rates(snapshot.counters)
          }
        }
      }
    }
    return response
  }

  package func recordConversions(
    request: Herald_Campaign_V1_RecordConversionsRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_RecordConversionsResponse {
    guard (1...1_000).contains(request.conversions.count) else {
      throw RPCError.field(
        "conversions", .invalidArgument, "conversions holds \(request.conversions.count); give 1 to 1,000 per call")
    }
    let now = Date()
    let inputs = try request.conversions.enumerated().map { index, item in
      try Self.conversion(item, field: "conversions[\(index)]", currency: results.currency, now: now)
    }
    let recorded = try await store.recordConversions(inputs, windowSeconds: results.attributionSeconds)
    var response = Herald_Campaign_V1_RecordConversionsResponse()
    response.conversions = recorded.map(Self.message)
    response.duplicates = Int32(recorded.filter(\.duplicate).count)
    response.recorded = Int32(recorded.count) - response.duplicates
    return response
  }

  /// A checked conversion; `field` prefixes the names of the fields refused.
  static func conversion(
    _ item: Herald_Campaign_V1_ConversionInput, field: String, currency: String, now: Date
  ) throws -> NewConversion {
    let reference = try subscriberReference(id: item.subscriberID, email: item.email, phone: item.phone, field: field)
    guard item.valueCents >= 0 else {
      throw RPCError.field("\(field).value_cents", .invalidArgument, "\(field).value_cents must not be negative (got \(item.valueCents))")
    }
    guard item.valueCents < 1_000_000_000_000 else {
      throw RPCError.field("\(field).value_cents", .invalidArgument, "\(field).value_cents must be below 1,000,000,000,000")
    }
    guard ResultsSettings.isCurrencyCode(item.currency) else {
      throw RPCError.field(
        "\(field).currency", .invalidArgument, "\(field).currency '\(item.currency)' is not an ISO 4217 code such as \(currency)")
    }
    guard item.currency == currency else {
      throw RPCError.field(
        "\(field).currency", .invalidArgument,
        "\(field).currency is \(item.currency); this installation counts in \(currency) (HERALD_CURRENCY): convert the value first")
    }
    let key = try Self.idempotencyKey(item.idempotencyKey, field: field)
    let occurredAt = item.hasOccurredAt ? try Self.occurredAt(item.occurredAt, field: field, now: now) : nil
    let campaign = item.campaignID.isEmpty ? nil : try RPCError.uuid(item.campaignID, field: "\(field).campaign_id")
    return NewConversion(
      subscriberID: reference.id, email: reference.email, phone: reference.phone,
      valueCents: item.valueCents, currency: item.currency, occurredAt: occurredAt, idempotencyKey: key, campaignID: campaign)
  }

  /// A caller's idempotency key (an order id, an event id): 1 to 200 code points (as JSON Schema
  /// counts them; a grapheme can hold any number), no control character.
  static func idempotencyKey(_ key: String, field: String) throws -> String {
    guard !key.isEmpty, key.unicodeScalars.count <= 200, !key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    else {
      throw RPCError.field(
        "\(field).idempotency_key", .invalidArgument, "\(field).idempotency_key must be 1 to 200 characters without control characters")
    }
    return key
  }

  /// When something the caller reports happened: at most 5 minutes ahead of the server's clock.
  static func occurredAt(_ timestamp: Google_Protobuf_Timestamp, field: String, now: Date) throws -> Date {
    let at = try RPCError.date(timestamp, field: "\(field).occurred_at")
    guard at <= now.addingTimeInterval(300) else {
      throw RPCError.field(
        "\(field).occurred_at", .invalidArgument, "\(field).occurred_at \(ISOTime.format(at)) is in the future (at most 5 minutes ahead)")
    }
    return at
  }

  package func pickAbTestWinner(
    request: Herald_Campaign_V1_PickAbTestWinnerRequest, context: ServerContext
  ) async throws -> Herald_Campaign_V1_Campaign {
    let id = try Self.uuid(request.campaignID, field: "campaign_id")
    guard !request.variant.isEmpty else { throw RPCError.field("variant", .invalidArgument, "variant is required") }
    return Self.message(try await store.pickABTestWinner(id, variant: request.variant, at: Date()))
  }

  // MARK: Messages

  static func message(_ record: ConversionRecord) -> Herald_Campaign_V1_Conversion {
    var message = Herald_Campaign_V1_Conversion()
    message.id = record.id.lowercasedString
    message.idempotencyKey = record.idempotencyKey
    message.subscriberID = record.subscriberID.lowercasedString
    message.campaignID = record.campaignID?.lowercasedString ?? ""
    message.variant = record.variant ?? ""
    message.attribution = record.attribution
    if let touched = record.touchedAt { message.touchedAt = Google_Protobuf_Timestamp(date: touched) }
    message.valueCents = record.valueCents
    message.currency = record.currency
    message.occurredAt = Google_Protobuf_Timestamp(date: record.occurredAt)
    message.receivedAt = Google_Protobuf_Timestamp(date: record.receivedAt)
    message.duplicate = record.duplicate
    return message
  }

  static func message(_ counters: ResultCounters) -> Herald_Campaign_V1_MetricCounters {
    var message = Herald_Campaign_V1_MetricCounters()
    message.audience = counters.audience
    message.recipients = counters.recipients
    message.queued = counters.queued
    message.sent = counters.sent
    message.delivered = counters.delivered
    message.bounced = counters.bounced
    message.softBounced = counters.softBounced
    message.failed = counters.failed
    message.opened = counters.opened
    message.uniqueOpened = counters.uniqueOpened
    message.clicked = counters.clicked
    message.uniqueClicked = counters.uniqueClicked
    message.replied = counters.replied
    message.unsubscribed = counters.unsubscribed
    message.complained = counters.complained
    message.costCents = counters.costCents
    message.conversions = counters.conversions
    message.revenueCents = counters.revenueCents
    return message
  }

  static func rates(_ counters: ResultCounters) -> Herald_Campaign_V1_MetricRates {
    var rates: [String: Herald_Campaign_V1_Rate] = [:]
    for (name, numerator, denominator) in counters.rates {
      var rate = Herald_Campaign_V1_Rate()
      rate.numerator = numerator
      rate.denominator = denominator
      if denominator != 0 { rate.value = Double(numerator) / Double(denominator) }
      rates[name] = rate
    }
    var message = Herald_Campaign_V1_MetricRates()
    message.delivery = rates["delivery"]!
    message.open = rates["open"]!
    message.click = rates["click"]!
    message.clickToOpen = rates["click_to_open"]!
    message.bounce = rates["bounce"]!
    message.complaint = rates["complaint"]!
    message.unsubscribe = rates["unsubscribe"]!
    message.conversion = rates["conversion"]!
    message.revenuePerRecipient = rates["revenue_per_recipient"]!
    message.roi = rates["roi"]!
    return message
  }

  static func message(_ test: ABTestRecord) -> Herald_Campaign_V1_AbTest {
    var message = Herald_Campaign_V1_AbTest()
    message.settings = .with {
      $0.testPercent = Int32(test.settings.testBasisPoints / 100)
      $0.waitMinutes = Int32(test.settings.waitSeconds / 60)
      $0.metric = test.settings.metric
      $0.fallback = test.settings.fallback
      $0.confidencePercent = Int32(test.settings.confidenceBasisPoints / 100)
    }
    message.status = test.decision == nil ? "testing" : "decided"
    if let decideAt = test.decideAt { message.decideAt = Google_Protobuf_Timestamp(date: decideAt) }
    if let decision = test.decision {
      message.decision = .with {
        $0.outcome = decision.outcome
        $0.winner = decision.winner ?? ""
        $0.reason = decision.reason
        $0.decidedAt = Google_Protobuf_Timestamp(date: decision.decidedAt)
        $0.method = decision.method
        $0.confidence = decision.confidence
        $0.alpha = decision.alpha
        $0.restRecipients = decision.restRecipients
        $0.variants = decision.variants.map { result in
          .with {
            $0.variant = result.variant
            $0.recipients = result.recipients
            $0.successes = result.successes
            $0.value = result.value
            $0.z = result.z ?? 0
            $0.pValue = result.pValue ?? 0
            $0.leader = result.leader
          }
        }
      }
    }
    return message
  }
}
