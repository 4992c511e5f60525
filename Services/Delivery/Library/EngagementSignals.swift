import Foundation
import HeraldServerKit

/// Whether an open or click through Herald's tracking links was a person's or a machine's (SPEC
/// §10): mailbox providers' privacy proxies fetch every image of a message as it arrives (Apple
/// Mail Privacy Protection), and security gateways follow every link of a message before the
/// person sees it. No single signal decides — Gmail's image proxy also fetches the pixel when a
/// person opens the message, and people do open mail within seconds — so each signal has a
/// weight and a hit is a machine's when they add up to `threshold`. Every signal seen is recorded
/// with the event, whatever the verdict.
package struct EngagementSignals: Sendable, Equatable {
  package var machine: Bool
  package var signals: [String]

  /// What the judgement looks at.
  package struct Hit: Sendable {
    package var kind: TrackingToken.Kind
    package var userAgent: String
    package var remoteAddress: String
    package var method: String
    /// Seconds between the message's send and this hit; nil when it has no send on record.
    package var secondsAfterSend: Double?
    /// The link's place (clicks) and the other links of the same message clicked in the last
    /// `burstWindow` seconds.
    package var link: Int
    package var links: Int
    package var recentlyClickedLinks: Set<Int>

    package init(
      kind: TrackingToken.Kind, userAgent: String, remoteAddress: String, method: String, secondsAfterSend: Double?,
      link: Int = 0, links: Int = 0, recentlyClickedLinks: Set<Int> = []
    ) {
      self.kind = kind
      self.userAgent = userAgent
      self.remoteAddress = remoteAddress
      self.method = method
      self.secondsAfterSend = secondsAfterSend
      self.link = link
      self.links = links
      self.recentlyClickedLinks = recentlyClickedLinks
    }
  }

  /// The weights add up to this for a machine.
  static let threshold = 2
  /// A hit this soon after the send is suspect (weight 1: people do open at once).
  package static let soonAfterSend = 10.0
  /// Other links of the message clicked within this many seconds make a burst.
  package static let burstWindow = 10.0

  /// User agents of link scanners, prefetchers and HTTP libraries (lower-case substrings).
  static let scannerAgents = [
    "bot/", "bot-", "bot;", "bot)", "facebookexternalhit", "crawler", "spider", "scanner", "preview", "prefetch", "barracuda", "mimecast",
    "proofpoint", "ppops",
    "symantec", "messagelabs", "forcepoint", "trendmicro", "sophos", "fortinet", "cisco", "ironport", "safelinks",
    "headlesschrome", "phantomjs", "python-requests", "python-urllib", "aiohttp", "curl/", "wget/", "go-http-client",
    "okhttp", "java/", "libwww", "httpclient", "node-fetch", "axios/",
  ]

  package init(_ hit: Hit) {
    var weight = 0
    var signals: [String] = []
    func note(_ signal: String, _ points: Int) {
      signals.append(signal)
      weight += points
    }
    let agent = hit.userAgent.lowercased()
    if agent.isEmpty {
      note("no-user-agent", 2)
    } else if let scanner = Self.scannerAgents.first(where: agent.contains) {
      note("scanner-user-agent:\(scanner)", 2)
    }
    // Apple's privacy proxy fetches every image of a message on arrival, from Apple's network
    // (17.0.0.0/8) with a bare "Mozilla/5.0": the open tells nothing of the person.
    if Self.isAppleNetwork(hit.remoteAddress) {
      note("apple-mail-privacy-protection", hit.kind == .open ? 2 : 1)
    } else if hit.userAgent == "Mozilla/5.0" && hit.kind == .open {
      note("apple-mail-privacy-protection:user-agent", 1)
    }
    // Gmail's and Yahoo's proxies fetch the pixel when the person opens the message: recorded,
    // no weight.
    if agent.contains("googleimageproxy") { note("image-proxy:google", 0) }
    if agent.contains("yahoomailproxy") { note("image-proxy:yahoo", 0) }
    if hit.method == "HEAD" { note("head-request", 2) }
    if let seconds = hit.secondsAfterSend, seconds < Self.soonAfterSend {
      note("within-\(Int(Self.soonAfterSend))s-of-send", 1)
    }
    if hit.kind == .click {
      let others = hit.recentlyClickedLinks.subtracting([hit.link])
      if others.count >= 2 || (hit.links > 1 && others.count + 1 >= hit.links) {
        note("links-clicked-together:\(others.count + 1)", 2)
      }
    }
    self.machine = weight >= Self.threshold
    self.signals = signals
  }

  package init(machine: Bool, signals: [String]) {
    self.machine = machine
    self.signals = signals
  }

  /// Whether `address` (IPv4, or IPv4-mapped IPv6) is in 17.0.0.0/8.
  static func isAppleNetwork(_ address: String) -> Bool {
    let v4 = address.hasPrefix("::ffff:") ? String(address.dropFirst(7)) : address
    let parts = v4.split(separator: ".")
    return parts.count == 4 && parts[0] == "17" && parts.allSatisfy { UInt8($0) != nil }
  }
}
