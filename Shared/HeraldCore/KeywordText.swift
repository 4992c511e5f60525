/// Text as keywords are compared (SPEC §11): upper-cased letters and digits, words separated by
/// one space, punctuation dropped: "  Stop! " is "STOP", "opt-out" is "OPTOUT", "don't" is "DONT".
/// The SMS keywords of delivery and the keyword rules of auto-responses both use it.
package enum KeywordText {
  package static func normalized(_ text: String) -> String {
    var words: [String] = []
    var word = ""
    for character in text.uppercased() {
      if character.isLetter || character.isNumber {
        word.append(character)
      } else if character.isWhitespace {
        if !word.isEmpty { words.append(word) }
        word = ""
      }
      // Punctuation is dropped inside a word ("opt-out", "don't").
    }
    if !word.isEmpty { words.append(word) }
    return words.joined(separator: " ")
  }
}
