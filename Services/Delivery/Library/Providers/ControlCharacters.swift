extension StringProtocol {
  /// Whether the text holds a control character of ASCII (U+0000 to U+001F, CR and LF among them,
  /// or DEL): such a value must not reach an SMTP command or an HTTP or e-mail header, where it
  /// could end the line and start another. The same set as the REST contract's "one line without
  /// control characters" (`[\x00-\x1f\x7f]`), so that whatever the gateway lets through is taken.
  var containsControlCharacter: Bool {
    unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
  }
}
