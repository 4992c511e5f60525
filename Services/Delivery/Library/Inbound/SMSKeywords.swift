import HeraldCore
import HeraldProtos

/// What an SMS number does with the texts people send it (SPEC §11): the CTIA keywords, matched
/// on the whole message (case-insensitive, trimmed, punctuation ignored), with the number's own
/// keywords and texts (`SmsKeywordSettings` of its provider).
///
/// The FCC counts any reasonable way of saying "stop" as a revocation (47 CFR 64.1200(a)(10)): a
/// short message made only of words that ask to stop ("stop texting me", "remove me",
/// "unsubscribe please") is taken as STOP; a longer one that holds such a word ("can I cancel my
/// order?") is queued for an operator's review, never ignored.
package struct SMSKeywords: Sendable {
  package enum Verdict: Sendable, Equatable {
    /// `keyword` is the keyword as configured (e.g. "STOP", "OPT OUT"), or the message's words
    /// when they plainly ask to stop.
    case stop(keyword: String)
    case start(keyword: String)
    case help(keyword: String)
    /// It may ask to stop: `words` are the words that make it so.
    case review(words: String)
    case other
  }

  package static let standardStop = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT"]
  package static let standardStart = ["START", "UNSTOP", "YES"]
  package static let standardHelp = ["HELP", "INFO"]

  /// Words that ask to stop on their own.
  static let revoking: Set<String> = [
    "STOP", "STOPALL", "UNSUBSCRIBE", "UNSUBSCRIBED", "UNSUB", "OPTOUT", "REMOVE", "REMOVED", "CANCEL", "QUIT", "REVOKE", "END",
  ]
  /// Words that may go with them in a plain request ("please stop texting me now").
  static let filler: Set<String> = [
    "PLEASE", "PLS", "PLZ", "ME", "MY", "I", "WANT", "TO", "BE", "NUMBER", "TEXT", "TEXTS", "TEXTING", "TEXTED", "MESSAGE",
    "MESSAGES", "MESSAGING", "MSG", "MSGS", "SMS", "SEND", "SENDING", "CONTACT", "CONTACTING", "NOW", "THIS", "THESE", "THEM",
    "FROM", "LIST", "THE", "IT", "ALL", "ASAP", "THANKS", "THANK", "YOU", "NO", "MORE", "OFF", "TAKE", "OUT", "OPT", "ANY",
    "US", "YOUR", "OK", "OKAY", "JUST", "IMMEDIATELY", "SUBSCRIPTION", "DO", "DONT", "NOT", "ANYMORE", "LONGER", "LEAVE",
    "ALONE",
  ]
  /// Two words that ask to stop together ("no more", "don't text").
  static let revokingPairs: Set<String> = [
    "OPT OUT", "NO MORE", "DONT TEXT", "DONT CONTACT", "DONT MESSAGE", "DONT SEND", "NOT TEXT", "NOT CONTACT", "NOT MESSAGE",
    "NOT SEND", "LEAVE ME", "ME OFF", "ME OUT",
  ]
  /// At most this many words for a message to be taken as a plain request to stop.
  static let plainWords = 6

  let stop: [String: String]
  let start: [String: String]
  let help: [String: String]

  package init(_ settings: Herald_Delivery_V1_SmsKeywordSettings = .init()) {
    func table(_ standard: [String], _ extra: [String]) -> [String: String] {
      var table: [String: String] = [:]
      for keyword in standard + extra {
        let normal = Self.normalized(keyword)
        if !normal.isEmpty { table[normal] = normal }
      }
      return table
    }
    stop = table(Self.standardStop, settings.stopKeywords)
    start = table(Self.standardStart, settings.startKeywords)
    help = table(Self.standardHelp, settings.helpKeywords)
  }

  /// The form keywords are compared in (`KeywordText.normalized`).
  package static func normalized(_ text: String) -> String { KeywordText.normalized(text) }

  package func classify(_ text: String) -> Verdict {
    let normal = Self.normalized(text)
    if let keyword = stop[normal] { return .stop(keyword: keyword) }
    if let keyword = start[normal] { return .start(keyword: keyword) }
    if let keyword = help[normal] { return .help(keyword: keyword) }
    let words = normal.split(separator: " ").map(String.init)
    let asking = words.filter { Self.revoking.contains($0) || stop[$0] != nil }
    let pairs = zip(words, words.dropFirst()).map { "\($0) \($1)" }.filter { Self.revokingPairs.contains($0) }
    guard !asking.isEmpty || !pairs.isEmpty else { return .other }
    let plain = words.count <= Self.plainWords && words.allSatisfy { Self.revoking.contains($0) || Self.filler.contains($0) }
    return plain ? .stop(keyword: normal) : .review(words: (asking + pairs).joined(separator: ", "))
  }

  /// The texts a number answers with: the provider's own, else the CTIA-shaped defaults.
  package struct Texts: Sendable, Equatable {
    package var stop: String
    package var start: String
    package var help: String

    package init(_ settings: Herald_Delivery_V1_SmsKeywordSettings) {
      let brand = settings.brand.isEmpty ? "" : "\(settings.brand): "
      let support = settings.support.isEmpty ? "" : " Help: \(settings.support)."
      let frequency = settings.frequency.isEmpty ? "Msg frequency varies" : settings.frequency
      stop =
        settings.stopText.isEmpty
        ? "\(brand)You are unsubscribed and will receive no more messages. Reply START to resubscribe." : settings.stopText
      start =
        settings.startText.isEmpty
        ? "\(brand)You are subscribed again. \(frequency). Msg & data rates may apply. Reply HELP for help, STOP to cancel."
        : settings.startText
      help =
        settings.helpText.isEmpty
        ? "\(brand)\(frequency). Msg & data rates may apply.\(support) Reply STOP to cancel." : settings.helpText
    }
  }
}
