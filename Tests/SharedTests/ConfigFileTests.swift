import Foundation
import HeraldProtos
import HeraldServerKit
import Testing

/// A configuration file holding text PostgreSQL cannot store, or bytes that are not UTF-8, is
/// refused naming the file and the entry.
@Suite struct ConfigFileTests {
  func write(_ bytes: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("herald-config-\(UUID().uuidString).json").path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  @Test func aNULInAnEntryIsNamed() throws {
    let path = try write(
      Array(
        #"{"limits": [{"descriptors": [{"key": "domain", "value": "a\u0000b"}], "requests_per_unit": "5", "unit": "UNIT_MINUTE"}]}"#.utf8))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let error = #expect(throws: ConfigFileError.self) {
      _ = try ConfigFile.load(Herald_Ratelimit_V1_LimitsFile.self, path: path, kind: "the limits file")
    }
    #expect(
      error?.description == "the limits file \(path): limits[0].descriptors[0].value holds a NUL character (U+0000), which cannot be stored"
    )
  }

  @Test func bytesThatAreNotUTF8AreRefused() throws {
    let path = try write(Array(#"{"providers": [{"name": "caf"#.utf8) + [0xE9] + Array(#""}]}"#.utf8))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let error = #expect(throws: ConfigFileError.self) {
      _ = try ConfigFile.load(Herald_Delivery_V1_ProvidersFile.self, path: path, kind: "the providers file")
    }
    #expect(error?.description == "the providers file \(path) is not valid UTF-8 text")
  }
}
