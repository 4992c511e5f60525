import Foundation
import GRPCCore
import HeraldPostgres
import HeraldProtos
import Logging
import Metrics
import SwiftProtobuf

/// The request id of the RPC being handled, set by `RequestLoggingInterceptor` and forwarded to
/// downstream calls by `RequestIDClientInterceptor`.
package enum RequestID {
  package static let metadataKey = "x-request-id"
  @TaskLocal package static var current: String?
}

/// Gives each RPC a request id (the caller's `x-request-id`, or a new one), logs its method,
/// peer, outcome and duration, and records `herald_grpc_server_*` metrics.
package struct RequestLoggingInterceptor: ServerInterceptor {
  let logger: Logger

  package init(logger: Logger) {
    self.logger = logger
  }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let supplied = request.metadata[stringValues: RequestID.metadataKey].first(where: { !$0.isEmpty && $0.count <= 128 })
    let requestID = supplied ?? UUID().uuidString
    let method = context.descriptor.fullyQualifiedMethod
    var logger = self.logger
    logger[metadataKey: "request_id"] = .string(requestID)
    logger[metadataKey: "method"] = .string(method)
    let started = ContinuousClock.now
    let finish: @Sendable (Logger, (any Error)?) -> Void = { logger, error in
      let code = error.map { Self.code(of: $0) } ?? "ok"
      let elapsed = ContinuousClock.now - started
      Counter(label: "herald_grpc_server_requests_total", dimensions: [("method", method), ("code", code)]).increment()
      let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
      Timer(label: "herald_grpc_server_duration_seconds", dimensions: [("method", method), ("code", code)])
        .recordNanoseconds(nanoseconds)
      // Only described when it will be logged: a debug line per RPC is off by default, and its
      // strings cost a visible share of a call's round trip (RateLimitDecisions).
      let level: Logger.Level = error == nil ? .debug : .notice
      guard logger.logLevel <= level else { return }
      var metadata: Logger.Metadata = ["code": "\(code)", "ms": "\(elapsed.milliseconds)", "peer": "\(context.remotePeer)"]
      if let error { metadata["error"] = "\(RPCError.describe(error))" }
      logger.log(level: level, "rpc finished", metadata: metadata)
    }

    var response: StreamingServerResponse<Output>
    do {
      response = try await RequestID.$current.withValue(requestID) { try await next(request, context) }
    } catch {
      finish(logger, error)
      throw error
    }
    switch response.accepted {
    case .success(var contents):
      contents.metadata.addString(requestID, forKey: RequestID.metadataKey)
      let producer = contents.producer
      contents.producer = { [logger] writer in
        do {
          let trailers = try await RequestID.$current.withValue(requestID) { try await producer(writer) }
          finish(logger, nil)
          return trailers
        } catch {
          finish(logger, error)
          throw error
        }
      }
      response.accepted = .success(contents)
    case .failure(let error):
      finish(logger, error)
    }
    return response
  }

  static func code(of error: any Error) -> String {
    if let error = error as? RPCError { return "\(error.code)" }
    if let error = error as? any RPCErrorConvertible { return "\(error.rpcErrorCode)" }
    return "unknown"
  }
}

/// Rejects RPCs other than Health with UNAVAILABLE until the process reports SERVING, and turns
/// any error that is not an RPC error (a database error, say) into INTERNAL naming the request id:
/// the details go to this service's log, never raw to the caller.
package struct ServiceGuardInterceptor: ServerInterceptor {
  let health: HealthStatus
  let service: String
  let logger: Logger

  package init(health: HealthStatus, service: String, logger: Logger) {
    self.health = health
    self.service = service
    self.logger = logger
  }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let isHealth = context.descriptor.service.fullyQualifiedService == "grpc.health.v1.Health"
    guard isHealth || health.status(of: "") == .serving else {
      throw RPCError(code: .unavailable, message: "the \(service) service is not ready (starting, or its database is unreachable)")
    }
    var response = try await mapped { try await next(request, context) }
    if case .success(var contents) = response.accepted {
      let producer = contents.producer
      contents.producer = { writer in try await mapped { try await producer(writer) } }
      response.accepted = .success(contents)
    }
    return response
  }

  private func mapped<T>(_ body: () async throws -> T) async throws -> T {
    do {
      return try await body()
    } catch let error as RPCError {
      throw error
    } catch let error as any (Error & RPCErrorConvertible) {
      throw error
    } catch {
      let requestID = RequestID.current ?? "-"
      logger.error("rpc failed", metadata: ["request_id": "\(requestID)", "error": "\(error.logDescription)"])
      throw RPCError(code: .internalError, message: "internal error in the \(service) service (request id \(requestID)); see its log")
    }
  }
}

/// Refuses a request holding a string that PostgreSQL cannot store (NUL) with INVALID_ARGUMENT
/// naming the field, before the handler sees it; each message of a stream is checked as it
/// arrives. Messages that check their own strings (`ChecksOwnStrings`) are passed on.
package struct RequestCheckInterceptor: ServerInterceptor {
  package init() {}

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var request = request
    let messages = request.messages
    request.messages = RPCAsyncSequence(
      wrapping: messages.map { message in
        if !(message is any ChecksOwnStrings), let protobuf = message as? any SwiftProtobuf.Message,
          let field = StringFieldCheck.firstNUL(in: protobuf)
        {
          throw RPCError.field(field, .invalidArgument, StringFieldCheck.holdsNUL(field))
        }
        return message
      })
    return try await next(request, context)
  }
}

/// Forwards the current request id to downstream services.
package struct RequestIDClientInterceptor: ClientInterceptor {
  package init() {}

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    if let requestID = RequestID.current, request.metadata[stringValues: RequestID.metadataKey].first(where: { _ in true }) == nil {
      request.metadata.addString(requestID, forKey: RequestID.metadataKey)
    }
    return try await next(request, context)
  }
}

extension Duration {
  package var milliseconds: Double {
    Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
  }
}
