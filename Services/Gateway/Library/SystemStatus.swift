import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCore
import HeraldProtos
import HeraldServerKit
import Hummingbird
import Prometheus
import SwiftProtobuf

/// One back-end service's health as the gateway sees it.
struct ServiceHealth: Codable, Sendable, Equatable {
  var name: String
  var address: String
  /// SERVING, NOT_SERVING, UNKNOWN or UNREACHABLE.
  var status: String
  var latencyMs: Double?
  var error: String?
}

/// Queue depth and provider breakers, from the delivery service.
struct DeliveryOverview: Codable, Sendable, Equatable {
  struct Provider: Codable, Sendable, Equatable {
    var name: String
    var channel: String
    var breakerState: String
    var errorRate: Double
    var latencyMs: Double
    var lastError: String?
  }

  var queue: [String: Int64] = [:]
  var ambiguous: Int64 = 0
  var providers: [Provider] = []
  var error: String?
}

/// Replicas, limits and counters, from the rate-limit service.
struct RateLimitOverview: Codable, Sendable, Equatable {
  var members: [String] = []
  var limits = 0
  var counters = 0
  var overLimit = 0
  var unreachable: [String] = []
  var error: String?
}

/// The latest verification report and the issues alerted on, from the verification service.
struct VerificationOverview: Codable, Sendable, Equatable {
  struct Alert: Codable, Sendable, Equatable {
    var fingerprint: String
    var severity: String
    var description: String
    var alertedAt: Date
  }

  var reportId: String?
  var status: String?
  var finishedAt: Date?
  var summary: String?
  var openIssues: [String: Int] = [:]
  var alerts: [Alert] = []
  var error: String?
}

struct SystemStatus: ResponseEncodable, Codable, Sendable, Equatable {
  /// "ok" when every service is SERVING, else "degraded".
  var status: String
  var degraded: [String]
  var services: [ServiceHealth]
  var delivery: DeliveryOverview?
  var rateLimit: RateLimitOverview?
  var verification: VerificationOverview?
  var checkedAt: Date
}
