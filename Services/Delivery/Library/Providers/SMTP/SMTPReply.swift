/// One SMTP reply: a three-digit code and one or more text lines (RFC 5321 §4.2).
package struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
  package var code: Int
  package var lines: [String]

  package var text: String { lines.joined(separator: " ") }
  package var description: String { "\(code) \(text)" }
  package var isPositive: Bool { (200..<400).contains(code) }
  package var isTransient: Bool { (400..<500).contains(code) }
}
