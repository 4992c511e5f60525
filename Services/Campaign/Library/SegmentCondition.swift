import Foundation

/// One condition of a segment (SPEC §2: a filter over attributes and consent).
package struct SegmentCondition: Codable, Sendable, Equatable {
  package var field: String
  package var op: String
  package var valueJSON: String

  package init(field: String, op: String, valueJSON: String) {
    self.field = field
    self.op = op
    self.valueJSON = valueJSON
  }

  enum CodingKeys: String, CodingKey {
    case field, op
    case valueJSON = "value_json"
  }
}
