import Foundation
import HeraldCore

/// The text/plain alternative of an HTML e-mail: the visible text, with a link kept as
/// `text (url)`, paragraphs, headings, list items and `<br>` as line breaks, `<title>`, `<style>`
/// and `<script>` left out, character references decoded and runs of white space collapsed.
package enum HTMLText {
  package static func text(fromHTML html: String) -> String {
    var out = ""
    var pendingBreaks = 0
    var pendingSpace = false
    var skipping: String?
    var links: [String?] = []
    var index = html.startIndex

    func emit(_ text: String) {
      for character in text {
        if character.isWhitespace {
          pendingSpace = true
          continue
        }
        if !out.isEmpty {
          if pendingBreaks > 0 {
            out += String(repeating: "\n", count: min(pendingBreaks, 2))
          } else if pendingSpace {
            out += " "
          }
        }
        pendingBreaks = 0
        pendingSpace = false
        out.append(character)
      }
    }
    func lineBreak(_ count: Int) { pendingBreaks = max(pendingBreaks, count) }

    while index < html.endIndex {
      if let skipped = skipping {
        // Inside <script>, <style> or <title>: everything up to its closing tag, even a
        // "<" of a script's comparison.
        guard let end = html[index...].range(of: "</\(skipped)", options: .caseInsensitive) else { break }
        index = end.lowerBound
        skipping = nil
        guard let close = html[index...].firstIndex(of: ">") else { break }
        index = html.index(after: close)
        continue
      }
      let character = html[index]
      if character == "<" {
        guard let close = html[index...].firstIndex(of: ">") else {
          emit(String(html[index...]))
          break
        }
        let tag = html[html.index(after: index)..<close]
        index = html.index(after: close)
        if tag.hasPrefix("!--") {
          // A comment: skip to its end.
          if !tag.hasSuffix("--"), let end = html[index...].range(of: "-->") { index = end.upperBound }
          continue
        }
        let closing = tag.hasPrefix("/")
        let name = tag.drop { $0 == "/" }.prefix { $0.isLetter || $0.isNumber }.lowercased()
        switch name {
        case "style", "script", "title":
          if !closing { skipping = name }
        case "br":
          lineBreak(1)
        case "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr", "section", "article",
          "header", "footer":
          lineBreak(2)
        case "li":
          if !closing {
            lineBreak(1)
            emit("-")
            pendingSpace = true
          }
        case "tr":
          lineBreak(1)
        case "td", "th":
          if !closing { pendingSpace = true }
        case "a":
          if closing {
            if let url = links.popLast() ?? nil { emit(" (\(url))") }
          } else {
            links.append(attribute("href", in: tag).map(\.htmlReferencesDecoded))
          }
        default:
          break
        }
        continue
      }
      let next = html[index...].firstIndex(of: "<") ?? html.endIndex
      emit(String(html[index..<next]).htmlReferencesDecoded)
      index = next
    }
    return out
  }

  /// The value of `name="…"` (or '…', or unquoted) in a tag's text.
  static func attribute(_ name: String, in tag: Substring) -> String? {
    let lower = tag.lowercased()
    var search = lower.startIndex
    while let range = lower.range(of: name, range: search..<lower.endIndex) {
      search = range.upperBound
      let before = range.lowerBound == lower.startIndex ? " " : lower[lower.index(before: range.lowerBound)]
      guard before.isWhitespace else { continue }
      var cursor = range.upperBound
      while cursor < lower.endIndex, lower[cursor].isWhitespace { cursor = lower.index(after: cursor) }
      guard cursor < lower.endIndex, lower[cursor] == "=" else { continue }
      cursor = lower.index(after: cursor)
      while cursor < lower.endIndex, lower[cursor].isWhitespace { cursor = lower.index(after: cursor) }
      guard cursor < lower.endIndex else { return nil }
      // The same offsets in the original (not lower-cased) text; both are the tag's characters.
      let offset = lower.distance(from: lower.startIndex, to: cursor)
      let original = tag[tag.index(tag.startIndex, offsetBy: offset)...]
      if let quote = original.first, quote == "\"" || quote == "'" {
        let value = original.dropFirst()
        return String(value.prefix { $0 != quote })
      }
      return String(original.prefix { !$0.isWhitespace && $0 != ">" })
    }
    return nil
  }
}
