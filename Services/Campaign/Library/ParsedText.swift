import Foundation
import HeraldCore
import Mustache

/// A parsed text: swift-mustache's template and, when the text is only literal text and plain
/// variable tags (`{{name}}`, `{{{name}}}`, `{{& name}}`), the same as pieces rendered by
/// concatenation. swift-mustache finds and renders every value through runtime casts of `Any`,
/// which was most of a campaign send's render time; anything else (sections, comments,
/// transforms) renders through swift-mustache. Tests hold both to the same output.
package struct ParsedText: Sendable {
  package enum Piece: Sendable {
    case literal(String)
    case value(String, escaped: Bool)
  }

  let mustache: MustacheTemplate
  package let pieces: [Piece]?

  /// `escapes`: whether `{{name}}` is HTML-escaped (the html format; text is not).
  init(mustache: MustacheTemplate, text: String, escapes: Bool) {
    self.mustache = mustache
    self.pieces = Self.pieces(of: text, escapes: escapes)
  }

  package func render(_ context: RenderContext) -> String {
    guard let pieces else { return renderWithMustache(context) }
    var output = ""
    for piece in pieces {
      switch piece {
      case .literal(let text): output += text
      case .value(let name, let escaped):
        let value = context.values[name] ?? ""
        output += escaped ? value.htmlEscaped : value
      }
    }
    return output
  }

  /// The text rendered by swift-mustache, whatever its tags.
  package func renderWithMustache(_ context: RenderContext) -> String { mustache.render(context) }

  static func pieces(of text: String, escapes: Bool) -> [Piece]? {
    // swift-mustache drops spaces and tabs that end the text, and the text pragma in front of a
    // text-format template is a standalone tag that takes a leading blank line with it: such
    // texts are left to swift-mustache.
    let blanks: Set<Character> = [" ", "\t"]
    if let last = text.last, blanks.contains(last) { return nil }
    if !escapes, let newline = text.firstIndex(where: \.isNewline), text[..<newline].allSatisfy(blanks.contains) {
      return nil
    }
    var pieces: [Piece] = []
    var rest = Substring(text)
    while let open = rest.range(of: "{{") {
      if open.lowerBound > rest.startIndex { pieces.append(.literal(String(rest[..<open.lowerBound]))) }
      rest = rest[open.upperBound...]
      let triple = rest.first == "{"
      if triple { rest = rest.dropFirst() }
      guard let close = rest.range(of: triple ? "}}}" : "}}") else { return nil }
      var tag = rest[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
      rest = rest[close.upperBound...]
      var escaped = escapes && !triple
      if !triple, tag.first == "&" {
        tag = tag.dropFirst().trimmingCharacters(in: .whitespaces)
        escaped = false
      }
      guard MessageTemplate.isName(tag) else { return nil }
      pieces.append(.value(tag, escaped: escaped))
    }
    if !rest.isEmpty { pieces.append(.literal(String(rest))) }
    return pieces
  }
}
