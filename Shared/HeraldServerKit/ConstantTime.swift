/// Compares secrets (signatures, MACs) in time that depends only on their length, so that how
/// long a refusal takes tells nothing of how much of a guess was right.
package enum ConstantTime {
  package static func equal(_ a: some Sequence<UInt8>, _ b: some Sequence<UInt8>) -> Bool {
    let (a, b) = (Array(a), Array(b))
    guard a.count == b.count else { return false }
    return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
  }
}
