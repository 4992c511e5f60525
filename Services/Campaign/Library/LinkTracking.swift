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

  /// The body with its links and pixel for one recipient.
  package func apply(to html: String, campaign: UUID, subscriber: UUID) -> String {
    var output = html
    if let click {
      let found = Self.links(in: html).filter { $0.url.hasPrefix("https://") || $0.url.hasPrefix("http://") }
        .filter { !$0.url.hasPrefix(untracked) }.prefix(TrackingToken.maxLinks)
      if !found.isEmpty {
        var rewritten = ""
        rewritten.reserveCapacity(html.utf8.count + found.count * 200)
        var position = html.startIndex
        for (index, link) in found.enumerated() {
          rewritten += html[position..<link.range.lowerBound]
          let token = TrackingToken(
            kind: .click, campaign: campaign, subscriber: subscriber, link: index, links: found.count, url: link.url)
          rewritten += token.sign(with: click)
          position = link.range.upperBound
        }
        rewritten += html[position...]
        output = rewritten
      }
    }
    if let open {
      let pixel = TrackingToken(kind: .open, campaign: campaign, subscriber: subscriber).sign(with: open)
      let image = #"<img src="\#(pixel)" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#
      if let body = output.range(of: "</body", options: [.caseInsensitive, .backwards]) {
        output.insert(contentsOf: image, at: body.lowerBound)
      } else {
        output += image
      }
    }
    return output
  }

  /// The `href` values of the `<a>` tags of `html`: where each value sits (between its quotes) and
  /// the URL it stands for (character references decoded).
  package static func links(in html: String) -> [(range: Range<String.Index>, url: String)] {
    var found: [(range: Range<String.Index>, url: String)] = []
    var search = html.startIndex
    while let tag = html.range(of: "<a", options: .caseInsensitive, range: search..<html.endIndex) {
      search = tag.upperBound
      // `<a` followed by space: an anchor, not `<abbr>` or `<address>`.
      guard search < html.endIndex, html[search].isWhitespace else { continue }
      guard let end = html[search...].firstIndex(of: ">") else { break }
      if let value = hrefValue(in: html, from: search, to: end) {
        let url = decodeCharacterReferences(String(html[value])).trimmingCharacters(in: .whitespacesAndNewlines)
        found.append((value, url))
      }
      search = end
    }
    return found
  }

  /// Where the value of the tag's `href` attribute lies (without quotes), between `start` and the
  /// tag's `>` at `end`.
  static func hrefValue(in html: String, from start: String.Index, to end: String.Index) -> Range<String.Index>? {
    var index = start
    while index < end {
      // An attribute name starts after whitespace.
      guard html[index].isWhitespace else {
        index = html.index(after: index)
        continue
      }
      while index < end, html[index].isWhitespace { index = html.index(after: index) }
      let nameStart = index
      while index < end, !html[index].isWhitespace, html[index] != "=", html[index] != ">" { index = html.index(after: index) }
      let name = html[nameStart..<index].lowercased()
      while index < end, html[index].isWhitespace { index = html.index(after: index) }
      guard index < end, html[index] == "=" else { continue }
      index = html.index(after: index)
      while index < end, html[index].isWhitespace { index = html.index(after: index) }
      guard index < end else { return nil }
      let valueRange: Range<String.Index>
      if html[index] == "\"" || html[index] == "'" {
        let quote = html[index]
        let valueStart = html.index(after: index)
        guard let close = html[valueStart..<end].firstIndex(of: quote) else { return nil }
        valueRange = valueStart..<close
        index = html.index(after: close)
      } else {
        let valueStart = index
        while index < end, !html[index].isWhitespace { index = html.index(after: index) }
        valueRange = valueStart..<index
      }
      if name == "href" { return valueRange }
    }
    return nil
  }

  /// `&amp;`, `&quot;`, `&apos;`, `&lt;`, `&gt;` and numeric references as the characters they
  /// stand for (what a browser follows); anything else as written.
  static func decodeCharacterReferences(_ text: String) -> String {
    guard text.contains("&") else { return text }
    var result = ""
    var rest = text[...]
    while let amp = rest.firstIndex(of: "&") {
      result += rest[..<amp]
      let after = rest[rest.index(after: amp)...]
      guard let semicolon = after.prefix(10).firstIndex(of: ";") else {
        result += "&"
        rest = after
        continue
      }
      let name = after[..<semicolon]
      let decoded: String? =
        switch name {
        case "amp": "&"
        case "quot": "\""
        case "apos": "'"
        case "lt": "<"
        case "gt": ">"
        default:
          if name.hasPrefix("#x") || name.hasPrefix("#X") {
            UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
          } else if name.hasPrefix("#") {
            UInt32(name.dropFirst()).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
          } else {
            nil
          }
        }
      if let decoded {
        result += decoded
        rest = after[after.index(after: semicolon)...]
      } else {
        result += "&"
        rest = after
      }
    }
    return result + rest
  }
}
