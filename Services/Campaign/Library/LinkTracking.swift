import Foundation
import HeraldCore
import HeraldServerKit

/// Puts a campaign's tracking into one rendered HTML body (SPEC §10): every `href` of an `<a>`
/// tag that is an http(s) URL goes through a signed click redirect, and an invisible pixel goes
/// before `</body>` (or at the end). The unsubscribe link is left as it is: it is not engagement,
/// and link scanners follow it.
package struct LinkTracking {
  let open: SignedTokenSigner?
  let click: SignedTokenSigner?
  /// Links starting with this are left alone (the public unsubscribe route, `<public URL>/u/`).
  let untracked: String

  /// Nil when neither opens nor clicks are tracked or no key is configured.
  package init?(links: TrackingLinks, opens: Bool, clicks: Bool) {
    guard opens || clicks, let signers = links.signers() else { return nil }
    open = opens ? signers.open : nil
    click = clicks ? signers.click : nil
    untracked = "\(links.publicURL)/u/"
  }

  /// The body with its links and pixel for one recipient; `key` is the message's idempotency key
  /// when it is not the campaign relay's (a journey's send).
  package func apply(to html: String, campaign: UUID, subscriber: UUID, key: String? = nil) -> String {
    var output = html
    if let click {
      let found = Self.links(in: html).filter { Self.trackable($0.url) && !$0.url.hasPrefix(untracked) }
        .prefix(TrackingToken.maxLinks)
      if !found.isEmpty {
        var rewritten = ""
        rewritten.reserveCapacity(html.utf8.count + found.count * 200)
        var position = html.startIndex
        for (index, link) in found.enumerated() {
          rewritten += html[position..<link.range.lowerBound]
          let token = TrackingToken(
            kind: .click, campaign: campaign, subscriber: subscriber, link: index, links: found.count, url: link.url, key: key)
          rewritten += token.sign(with: click)
          position = link.range.upperBound
        }
        rewritten += html[position...]
        output = rewritten
      }
    }
    if let open {
      let pixel = TrackingToken(kind: .open, campaign: campaign, subscriber: subscriber, key: key).sign(with: open)
      let image = #"<img src="\#(pixel)" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#
      if let body = output.range(of: "</body", options: [.caseInsensitive, .backwards]) {
        output.insert(contentsOf: image, at: body.lowerBound)
      } else {
        output += image
      }
    }
    return output
  }

  /// The longest target URL that is tracked (in UTF-8 bytes): its token must stay under
  /// `TrackingToken.maxLength`. Longer links are left as they are.
  static let maxTrackedURLBytes = 2048

  /// Whether a link's target can go through a redirect: http(s), not too long, and without
  /// control characters or spaces (which a browser would strip or escape differently).
  static func trackable(_ url: String) -> Bool {
    (url.hasPrefix("https://") || url.hasPrefix("http://")) && url.utf8.count <= maxTrackedURLBytes
      && !url.unicodeScalars.contains { $0.properties.isWhitespace || $0.properties.generalCategory == .control }
  }

  /// The `href` values of the `<a>` tags of `html`: where each value sits (between its quotes) and
  /// the URL it stands for (character references decoded). Comments, scripts and styles are
  /// skipped; a `>` inside a quoted attribute value does not end the tag. Scanned as UTF-8, so a
  /// combining mark after a quote cannot hide it.
  package static func links(in html: String) -> [(range: Range<String.Index>, url: String)] {
    let bytes = html.utf8
    var found: [(range: Range<String.Index>, url: String)] = []
    var index = bytes.startIndex
    func starts(_ text: String, at position: String.Index) -> Bool {
      var cursor = position
      for expected in text.utf8 {
        guard cursor < bytes.endIndex, bytes[cursor] | 0x20 == expected | 0x20 else { return false }
        cursor = bytes.index(after: cursor)
      }
      return true
    }
    func skip(past text: String, from position: String.Index) -> String.Index {
      html.range(of: text, options: .caseInsensitive, range: position..<html.endIndex)?.upperBound ?? html.endIndex
    }
    while let open = bytes[index...].firstIndex(of: UInt8(ascii: "<")) {
      if starts("<!--", at: open) {
        index = skip(past: "-->", from: open)
      } else if starts("<script", at: open) {
        index = skip(past: "</script", from: open)
      } else if starts("<style", at: open) {
        index = skip(past: "</style", from: open)
      } else if starts("<a", at: open), bytes.index(open, offsetBy: 2) < bytes.endIndex,
        isSpace(bytes[bytes.index(open, offsetBy: 2)])
      {
        let (href, end) = scanTag(html, from: bytes.index(open, offsetBy: 2))
        if let href {
          let url = String(html[href]).htmlReferencesDecoded.trimmingCharacters(in: Self.htmlSpace)
          found.append((href, url))
        }
        index = end
      } else {
        index = bytes.index(after: open)
      }
    }
    return found
  }

  /// HTML's white space (a browser trims it from a URL attribute; a no-break space is kept).
  static let htmlSpace = CharacterSet(charactersIn: " \t\n\r\u{0C}")

  static func isSpace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0C || byte == 0x0D
  }

  /// Walks a tag's attributes from `start` (after its name) to its closing `>`: where the value of
  /// `href` lies (without quotes), and where the tag ends.
  static func scanTag(_ html: String, from start: String.Index) -> (href: Range<String.Index>?, end: String.Index) {
    let bytes = html.utf8
    var index = start
    var href: Range<String.Index>?
    while index < bytes.endIndex {
      let byte = bytes[index]
      if byte == UInt8(ascii: ">") { return (href, bytes.index(after: index)) }
      if isSpace(byte) || byte == UInt8(ascii: "/") {
        index = bytes.index(after: index)
        continue
      }
      // An attribute: its name, then optionally = and a value.
      let nameStart = index
      while index < bytes.endIndex, !isSpace(bytes[index]), bytes[index] != UInt8(ascii: "="), bytes[index] != UInt8(ascii: ">") {
        index = bytes.index(after: index)
      }
      let name = html[nameStart..<index].lowercased()
      while index < bytes.endIndex, isSpace(bytes[index]) { index = bytes.index(after: index) }
      guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") else { continue }
      index = bytes.index(after: index)
      while index < bytes.endIndex, isSpace(bytes[index]) { index = bytes.index(after: index) }
      guard index < bytes.endIndex else { break }
      let value: Range<String.Index>
      if bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
        let quote = bytes[index]
        let valueStart = bytes.index(after: index)
        let close = bytes[valueStart...].firstIndex(of: quote) ?? bytes.endIndex
        value = valueStart..<close
        index = close < bytes.endIndex ? bytes.index(after: close) : close
      } else {
        let valueStart = index
        while index < bytes.endIndex, !isSpace(bytes[index]), bytes[index] != UInt8(ascii: ">") { index = bytes.index(after: index) }
        value = valueStart..<index
      }
      if name == "href", href == nil { href = value }
    }
    return (nil, bytes.endIndex)
  }
}
