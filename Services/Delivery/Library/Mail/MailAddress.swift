import Foundation

/// A recipient's address as it goes to an SMTP server: the domain in IDNA A-labels (`bücher.de` →
/// `xn--bcher-kva.de`, RFC 5891), the part before the @ as it is. When that part is not ASCII the
/// message needs SMTPUTF8 (RFC 6531), and its headers carry the address as UTF-8 (RFC 6532).
package struct MailAddress: Equatable {
  /// The address with its domain in A-labels.
  package let wire: String
  /// Whether the part before the @ is not ASCII.
  package let needsSMTPUTF8: Bool

  /// Throws naming what is wrong when the domain cannot be written in A-labels.
  package init(_ address: String) throws(IDNA.Invalid) {
    guard let at = address.lastIndex(of: "@") else {
      throw IDNA.Invalid(reason: "'\(address)' has no @")
    }
    let local = address[..<at]
    let domain = address[address.index(after: at)...]
    needsSMTPUTF8 = !local.utf8.allSatisfy { $0 < 0x80 }
    let asciiDomain = domain.utf8.allSatisfy { $0 < 0x80 } ? String(domain) : try IDNA.asciiDomain(String(domain))
    wire = "\(local)@\(asciiDomain)"
  }
}

extension MailAddress {
  /// The part of `address` after its last @, lower-cased; nil when it has none.
  package static func domain(of address: String) -> String? {
    address.lastIndex(of: "@").map { address[address.index(after: $0)...].lowercased() }
  }
}

/// Internationalized domain names to ASCII (IDNA, RFC 5891): each label mapped as UTS #46 does for
/// the common cases (compatibility-normalized, NFKC, and lower-cased), then, when it is not ASCII,
/// written as `xn--` and its Punycode (RFC 3492).
package enum IDNA {
  package struct Invalid: Error, Equatable, CustomStringConvertible {
    package var reason: String
    package var description: String { reason }
  }

  package static func asciiDomain(_ domain: String) throws(Invalid) -> String {
    // The dots UTS #46 maps to "." (ideographic and full-width full stops).
    let dotted = String(domain.unicodeScalars.map { ["\u{3002}", "\u{FF0E}", "\u{FF61}"].contains($0) ? "." : Character($0) })
    var labels: [String] = []
    for label in dotted.split(separator: ".", omittingEmptySubsequences: false) {
      let mapped = label.precomposedStringWithCompatibilityMapping.lowercased()
      guard !mapped.isEmpty else { throw Invalid(reason: "the domain '\(domain)' has an empty label") }
      guard !mapped.hasPrefix("-"), !mapped.hasSuffix("-") else {
        throw Invalid(reason: "the label '\(label)' of '\(domain)' starts or ends with a hyphen")
      }
      guard
        mapped.unicodeScalars.allSatisfy({
          $0.isASCII
            ? ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-")
            : !$0.properties.isWhitespace
              && $0.properties.generalCategory != .control && $0.properties.generalCategory != .format
        })
      else { throw Invalid(reason: "the label '\(label)' of '\(domain)' holds a character a domain cannot have") }
      if mapped.unicodeScalars.allSatisfy(\.isASCII) {
        labels.append(mapped)
        continue
      }
      guard let encoded = Punycode.encode(mapped.unicodeScalars.map(\.value)) else {
        throw Invalid(reason: "the label '\(label)' of '\(domain)' is too long to encode")
      }
      labels.append("xn--" + encoded)
    }
    let ascii = labels.joined(separator: ".")
    guard labels.allSatisfy({ $0.utf8.count <= 63 }), ascii.utf8.count <= 253 else {
      throw Invalid(reason: "the domain '\(domain)' is longer than DNS allows once encoded (\(ascii))")
    }
    return ascii
  }
}

/// Punycode (RFC 3492 §6.3), the encoder only.
package enum Punycode {
  private static let (base, tMin, tMax, skew, damp) = (36, 1, 26, 38, 700)

  /// The Punycode of `input` (without the `xn--`); nil when it overflows.
  package static func encode(_ input: [UInt32]) -> String? {
    var output: [UInt8] = input.filter { $0 < 0x80 }.map { UInt8($0) }
    let basic = output.count
    if basic > 0 { output.append(UInt8(ascii: "-")) }
    var (n, delta, bias, handled) = (0x80, 0, 72, basic)
    while handled < input.count {
      guard let next = input.lazy.map({ Int($0) }).filter({ $0 >= n }).min() else { break }
      let (step, overflow) = (next - n).multipliedReportingOverflow(by: handled + 1)
      guard !overflow, delta <= Int(Int32.max) - step else { return nil }
      delta += step
      n = next
      for scalar in input.lazy.map({ Int($0) }) {
        if scalar < n { delta += 1 }
        guard scalar == n else { continue }
        var q = delta
        var k = base
        while true {
          let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
          if q < t { break }
          output.append(digit(t + (q - t) % (base - t)))
          q = (q - t) / (base - t)
          k += base
        }
        output.append(digit(q))
        bias = adapt(delta, points: handled + 1, first: handled == basic)
        delta = 0
        handled += 1
      }
      delta += 1
      n += 1
    }
    return String(decoding: output, as: UTF8.self)
  }

  private static func digit(_ value: Int) -> UInt8 {
    value < 26 ? UInt8(ascii: "a") + UInt8(value) : UInt8(ascii: "0") + UInt8(value - 26)
  }

  private static func adapt(_ delta: Int, points: Int, first: Bool) -> Int {
    var delta = first ? delta / damp : delta / 2
    delta += delta / points
    var k = 0
    while delta > ((base - tMin) * tMax) / 2 {
      delta /= base - tMin
      k += base
    }
    return k + (base - tMin + 1) * delta / (delta + skew)
  }
}
