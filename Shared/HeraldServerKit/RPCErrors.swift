import Foundation
import GRPCCore
import GRPCProtobuf
import HeraldCore
import SwiftProtobuf

/// Metadata key naming the request field an INVALID_ARGUMENT (or similar) error is about; the
/// gateway turns it into the `field` of its problem+json answer. Kept beside the standard
/// `google.rpc.Status` details for the callers that read it.
package let fieldMetadataKey = "herald-field"

extension RPCError {
  /// An error about one field of the request, in the standard rich error model: a
  /// `google.rpc.Status` whose details hold a `google.rpc.BadRequest` with the field violation
  /// (`grpc-status-details-bin`, which grpcio, grpc-go and other clients decode), and the field
  /// also as `herald-field` metadata.
  package static func field(_ field: String, _ code: RPCError.Code = .invalidArgument, _ message: String) -> RPCError {
    let violation = ErrorDetails.BadRequest.FieldViolation(field: field, description: message)
    let status = GoogleRPCStatus(code: code, message: message, details: .badRequest(.init(violations: [violation])))
    var metadata = status.rpcErrorMetadata
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

  /// A Timestamp's date, or INVALID_ARGUMENT naming `field` when it lies outside the range the
  /// Timestamp type defines (0001-01-01 to 9999-12-31, nanos 0 to 999,999,999): such a value
  /// would overflow the arithmetic of anything that uses it.
  package static func date(_ timestamp: Google_Protobuf_Timestamp, field: String) throws(RPCError) -> Date {
    guard (-62_135_596_800...253_402_300_799).contains(timestamp.seconds), (0..<1_000_000_000).contains(timestamp.nanos) else {
      throw .field(field, .invalidArgument, "\(field) must lie between 0001-01-01 and 9999-12-31")
    }
    return timestamp.date
  }

  /// A failed call as people read it: the gRPC code and message (any other error as it prints).
  package static func describe(_ error: any Error) -> String {
    (error as? RPCError).map { "\($0.code): \($0.message)" } ?? "\(error)"
  }

  /// The field the error is about: from `herald-field`, else from the first field violation of
  /// the standard details.
  package var field: String? {
    if let field = metadata[stringValues: fieldMetadataKey].first(where: { _ in true }) { return field }
    guard let status = try? unpackGoogleRPCStatus() else { return nil }
    for detail in status.details {
      if let badRequest = detail.badRequest, let violation = badRequest.violations.first { return violation.field }
    }
    return nil
  }
}
