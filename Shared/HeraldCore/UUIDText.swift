import Foundation

extension UUID {
  /// The id as Herald's APIs, idempotency keys and logs write it: canonical 8-4-4-4-12 lower-case
  /// hex (RFC 9562). Written byte by byte; `uuidString.lowercased()` formats through sprintf and
  /// then copies the text again, which a campaign send paid several times per recipient.
  package var lowercasedString: String {
    withUnsafeBytes(of: uuid) { bytes in
      String(unsafeUninitializedCapacity: 36) { text in
        var position = 0
        for (index, byte) in bytes.enumerated() {
          if index == 4 || index == 6 || index == 8 || index == 10 {
            text[position] = UInt8(ascii: "-")
            position += 1
          }
          text[position] = UUIDText.digits[Int(byte >> 4)]
          text[position + 1] = UUIDText.digits[Int(byte & 0x0f)]
          position += 2
        }
        return position
      }
    }
  }

  /// Parses the canonical 8-4-4-4-12 hex form in either case, as `UUID(uuidString:)` does, without
  /// going through sscanf: over the contiguous UTF-8 of a native string (delivery parses two ids
  /// of every message it is handed).
  package init?(text: String) {
    guard let value = text.utf8.withContiguousStorageIfAvailable(UUIDText.parse) ?? UUIDText.parse(Array(text.utf8))
    else { return nil }
    self.init(uuid: value)
  }

  package init?(text: Substring) {
    self.init(text: String(text))
  }
}

enum UUIDText {
  static let digits: [UInt8] = Array("0123456789abcdef".utf8)

  static func parse(_ utf8: some Collection<UInt8>) -> uuid_t? {
    guard utf8.count == 36 else { return nil }
    var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    let parsed = withUnsafeMutableBytes(of: &value) { bytes -> Bool in
      var position = 0
      var byte = 0
      for character in utf8 {
        if position == 8 || position == 13 || position == 18 || position == 23 {
          guard character == UInt8(ascii: "-") else { return false }
        } else {
          guard let nibble = nibble(character) else { return false }
          if byte % 2 == 0 { bytes[byte / 2] = nibble << 4 } else { bytes[byte / 2] |= nibble }
          byte += 1
        }
        position += 1
      }
      return true
    }
    return parsed ? value : nil
  }

  static func nibble(_ character: UInt8) -> UInt8? {
    switch character {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
    default: nil
    }
  }
}

extension UUID {
  /// The 16 bytes of the id, in order.
  package var bytes: [UInt8] {
    withUnsafeBytes(of: uuid) { Array($0) }
  }

  /// The id of 16 bytes (nil for any other count).
  package init?(bytes: some Collection<UInt8>) {
    guard bytes.count == 16 else { return nil }
    let b = Array(bytes)
    self.init(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
  }
}
