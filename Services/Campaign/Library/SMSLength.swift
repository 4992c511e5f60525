/// SMS length as carriers count it (3GPP TS 23.038).
package enum SMSLength {
  package struct Measure: Sendable, Equatable {
    package var encoding: String
    package var units: Int
    package var segments: Int

    package init(encoding: String, units: Int, segments: Int) {
      self.encoding = encoding
      self.units = units
      self.segments = segments
    }
  }

  static let basic: Set<Unicode.Scalar> = Set(
    ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
      + "abcdefghijklmnopqrstuvwxyzäöñüà").unicodeScalars)
  static let extended: Set<Unicode.Scalar> = Set("^{}\\[~]|€\u{0C}".unicodeScalars)

  package static func measure(_ text: String) -> Measure {
    var septets = 0
    for scalar in text.unicodeScalars {
      if basic.contains(scalar) {
        septets += 1
      } else if extended.contains(scalar) {
        septets += 2
      } else {
        let units = text.utf16.count
        return Measure(encoding: "UCS-2", units: units, segments: units <= 70 ? 1 : (units + 66) / 67)
      }
    }
    return Measure(encoding: "GSM-7", units: septets, segments: septets <= 160 ? 1 : (septets + 152) / 153)
  }
}
