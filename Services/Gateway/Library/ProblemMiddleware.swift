import Foundation
import HTTPTypes
import HeraldPostgres
import Hummingbird
import Logging

/// Turns every error into a problem answer, so no route leaks a bare error or an HTML page. A
/// request for a documented path with a method the path does not take is 405 with `Allow`.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
  let routes: RouteIndex

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    do {
      return try await next(request, context)
    } catch let problem as Problem {
      throw problem
    } catch let error as any HTTPResponseError {
      if error.status == .notFound, let allowed = routes.methods(for: request.uri.path), !allowed.isEmpty {
        var problem = Problem(
          status: .methodNotAllowed,
          detail: "\(request.method) is not allowed on \(request.uri.path); it takes \(allowed.joined(separator: ", "))")
        problem.allow = allowed.joined(separator: ", ")
        throw problem
      }
      throw Problem(status: error.status, detail: Self.detail(for: error, request: request))
    } catch {
      context.logger.error("request failed", metadata: ["error": "\(error.logDescription)"])
      throw Problem(status: .internalServerError, detail: "internal error; see the gateway log")
    }
  }

  static func detail(for error: any HTTPResponseError, request: Request) -> String {
    switch error.status {
    case .notFound: return "no route for \(request.method) \(request.uri.path)"
    case .contentTooLarge: return "the request body is too large (at most \(ProtoJSON.maxBody) bytes)"
    default: return (error as? HTTPError)?.body ?? error.status.reasonPhrase
    }
  }
}

/// The documented paths and their methods, to tell a wrong method (405) from a wrong path (404).
struct RouteIndex: Sendable {
  private let templates: [(segments: [String], methods: [String])]

  init(paths: [(path: String, methods: [String])]) {
    templates = paths.map { (Array($0.path.split(separator: "/").map(String.init)), $0.methods.map { $0.uppercased() }.sorted()) }
  }

  /// The methods of the first documented path that `path` fits; nil when it fits none.
  func methods(for path: String) -> [String]? {
    let segments = path.split(separator: "/").map(String.init)
    for template in templates where template.segments.count == segments.count {
      let fits = zip(template.segments, segments).allSatisfy { pattern, segment in
        (pattern.hasPrefix("{") && pattern.hasSuffix("}")) || pattern == segment
      }
      if fits { return template.methods }
    }
    return nil
  }
}
