/// Consistent hashing over members: each member holds `pointsPerMember` points on a 64-bit ring;
/// a key belongs to the first point at or after its hash. A member joining or leaving moves only
/// the keys of the arcs it gains or loses.
package struct HashRing: Sendable {
  package static let pointsPerMember = 128
  private var points: [(hash: UInt64, member: String)] = []

  package init(members: [String]) {
    var points: [(hash: UInt64, member: String)] = []
    for member in members {
      for point in 0..<Self.pointsPerMember {
        points.append((Self.hash("\(member)#\(point)"), member))
      }
    }
    points.sort { a, b in a.hash != b.hash ? a.hash < b.hash : a.member < b.member }
    self.points = points
  }

  package func owner(of key: String) -> String? {
    guard !points.isEmpty else { return nil }
    let hash = Self.hash(key)
    var low = 0
    var high = points.count
    while low < high {
      let middle = (low + high) / 2
      if points[middle].hash < hash { low = middle + 1 } else { high = middle }
    }
    return points[low == points.count ? 0 : low].member
  }

  /// The share of the ring each member owns.
  package func shares() -> [String: Double] {
    guard let last = points.last else { return [:] }
    var shares: [String: Double] = [:]
    var previous = last.hash
    for point in points {
      shares[point.member, default: 0] += Double(point.hash &- previous) / Double(UInt64.max)
      previous = point.hash
    }
    return shares
  }

  /// FNV-1a, then a SplitMix64 finaliser so that similar keys land far apart.
  package static func hash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
    hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
    return hash ^ (hash >> 31)
  }
}
