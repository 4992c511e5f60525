import Foundation
import HeraldCore
import Testing

/// Herald's own UUID text, held to Foundation's.
@Suite struct UUIDTextTests {
  @Test func formatsAndParsesAsFoundationDoes() throws {
    var generator = SystemRandomNumberGenerator()
    let edges = [
      UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), try #require(UUID(uuidString: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")),
    ]
    for id in edges
      + (0..<1000).map({ _ in UUID(uuid: withUnsafeBytes(of: (generator.next(), generator.next())) { $0.load(as: uuid_t.self) }) })
    {
      let text = id.lowercasedString
      #expect(text == id.uuidString.lowercased())
      #expect(UUID(text: text) == id)
      #expect(UUID(text: id.uuidString) == id)
    }
  }

  /// Only the canonical form is an id (Foundation's parser takes a few malformed texts, e.g. one
  /// ending in a multi-byte character).
  @Test func refusesAnythingButTheCanonicalForm() {
    let good = "0f8fad5b-d9cb-469f-a165-70867728950e"
    let bad = [
      "", "0f8fad5b", good + "0", String(good.dropLast()), "0f8fad5bd9cb469fa16570867728950e",
      "{0f8fad5b-d9cb-469f-a165-70867728950e}", "0f8fad5b-d9cb-469f-a165_70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950g",
      "0f8fad5bd-9cb-469f-a165-70867728950e", " 0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5b-d9cb-469f-a165-7086772895é",
    ]
    for text in bad {
      #expect(UUID(text: text) == nil, "\(text)")
    }
    #expect(UUID(text: good) != nil)
  }
}
