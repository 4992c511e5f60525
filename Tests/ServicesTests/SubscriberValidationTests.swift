import Foundation
import HeraldCampaign
import Testing

/// Contact checks (SPEC §2) without a database: ASCII addresses are checked by their bytes (the
/// fast path an import takes for nearly every row) and must be judged exactly as by characters.
@Suite struct SubscriberValidationTests {
  static let addresses: [(String, String?)] = [
    ("Ada@Example.com", "ada@example.com"),
    ("  grace@example.com\n", "grace@example.com"),
    ("\tbob@mail-1.example.org ", "bob@mail-1.example.org"),
    ("o'neil+news@example.co.uk", "o'neil+news@example.co.uk"),
    ("jürgen@bücher.de", "jürgen@bücher.de"),
    ("", nil),
    ("   ", nil),
  ]
  static let refused = [
    "a b@example.com", "a\u{0B}b@example.com", "a\u{0C}b@example.com", "a,b@example.com", "a;b@example.com", "<a@example.com>",
    "a@exa_mple.com", "a@example", "a@.example.com", "a@example.com.", "a@example..com", "@example.com", "a@@example.com",
    "a@b@example.com", "a@exa mple.com", "ä b@example.com", "a@bü cher.de", "a@b\u{00A0}c.de",
    String(repeating: "x", count: 65) + "@example.com",
  ]

  @Test func addressesAreNormalisedOrRefusedNamingTheField() throws {
    for (raw, expected) in Self.addresses {
      #expect(try SubscriberValidation.email(raw) == expected, "\(raw.debugDescription)")
    }
    for raw in Self.refused {
      #expect(throws: SubscriberValidation.Invalid.self, "\(raw.debugDescription)") { try SubscriberValidation.email(raw) }
    }
  }

  @Test func trimmingMatchesFoundationsWhateverTheEnds() {
    for raw in ["plain", " lead", "trail ", "\u{00A0}nbsp\u{00A0}", "\u{2003}em\u{2003}", "\nline\r\n", "é", "", " ", "~x!", "\u{85}x"] {
      #expect(SubscriberValidation.trimmed(raw) == raw.trimmingCharacters(in: .whitespacesAndNewlines), "\(raw.debugDescription)")
    }
  }
}
