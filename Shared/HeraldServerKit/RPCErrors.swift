import Foundation
import GRPCCore
import HeraldCore

/// Metadata key naming the request field an INVALID_ARGUMENT (or similar) error is about; the
/// gateway turns it into the `field` of its problem+json answer.
package let fieldMetadataKey = "herald-field"

extension RPCError {
  /// An error about one field of the request.
  package static func field(_ field: String, _ code: RPCError.Code = .invalidArgument, _ message: String) -> RPCError {
    var metadata = Metadata()
    metadata.addString(field, forKey: fieldMetadataKey)
    return RPCError(code: code, message: message, metadata: metadata)
  }

  /// `text` as a UUID, or INVALID_ARGUMENT naming `field`.
  /// `field` is evaluated only when `text` is not a UUID.
  package static func uuid(_ text: String, field: @autoclosure () -> String) throws(RPCError) -> UUID {
    guard let id = UUID(text: text) else {
      let field = field()
      throw .field(field, .invalidArgument, "\(field) '\(text)' is not a UUID")
    }
    return id
  }

  /// A failed call as people read it: the gRPC code and message (any other error as it prints).
  package static func describe(_ error: any Error) -> String {
    (error as? RPCError).map { "\($0.code): \($0.message)" } ?? "\(error)"
  }

  package var field: String? {
    metadata[stringValues: fieldMetadataKey].first(where: { _ in true })
  }
}
