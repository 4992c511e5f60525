import Foundation
import GRPCCore
import HTTPTypes
import HeraldServerKit
import Hummingbird
import NIOCore

/// Serves the routes bound to RPCs: for each it checks the API key's scope, reads the path and
/// query parameters and the JSON body, checks them against the operation's schemas in the
/// OpenAPI document (answering 400 naming the field when they do not fit), fills the fields the
/// gateway sets, calls the service and answers its reply (or its error as problem+json).
struct RESTRouter: Sendable {
  let description: APIDescription
  let clients: GatewayClients
  let defaultTimeout: Duration

  /// Adds every route whose service is configured; returns the (method, OpenAPI path) pairs added.
  @discardableResult
  func register(_ routes: [RESTRoute], on group: RouterGroup<GatewayRequestContext>) throws -> [(String, String)] {
    var added: [(String, String)] = []
    for route in routes where clients.serves(route.service) {
      guard let operation = description.operations[route.operationID] else {
        throw APIDescriptionError("the route \(route.operationID) is not in the OpenAPI document")
      }
      let handler = Handler(route: route, operation: operation, router: self)
      group.on(RouterPath(Self.hummingbirdPath(route.path)), method: HTTPRequest.Method(route.method.uppercased())!) {
        request, context in try await handler.handle(request, context: context)
      }
      added.append((route.method, route.path))
    }
    return added
  }

  /// `/v1/lists/{list_id}/members` → `v1/lists/:p2/members`: parameters are named by position, so
  /// that routes whose variables have different names at the same place share one router node.
  static func hummingbirdPath(_ path: String) -> String {
    path.split(separator: "/").enumerated().map { index, segment in
      segment.hasPrefix("{") && segment.hasSuffix("}") ? ":p\(index)" : String(segment)
    }.joined(separator: "/")
  }

  /// The path variables of `path` by name, with their positional router names.
  static func pathVariables(_ path: String) -> [(name: String, parameter: String)] {
    path.split(separator: "/").enumerated().compactMap { index, segment in
      guard segment.hasPrefix("{") && segment.hasSuffix("}") else { return nil }
      return (String(segment.dropFirst().dropLast()), "p\(index)")
    }
  }

  /// The request's query parameters as JSON values, each checked against its schema in the
  /// document; an unknown or repeated one, or a missing required one, is a 400 naming it.
  static func queryParameters(
    _ request: Request, operation: APIDescription.Operation, validator: JSONSchemaValidator
  ) throws -> JSONNode {
    var query: [(name: String, values: [String])] = []
    for (key, value) in request.uri.queryParameters {
      let name = String(key)
      if let index = query.firstIndex(where: { $0.name == name }) {
        query[index].values.append(String(value))
      } else {
        query.append((name, [String(value)]))
      }
    }
    var result = JSONNode.object([])
    for (name, values) in query {
      guard let parameter = operation.queryParameters.first(where: { $0.name == name }) else {
        let known = operation.queryParameters.map(\.name)
        throw Problem.badRequest(
          "'\(name)' is not a query parameter of this route"
            + (known.isEmpty ? "; it takes none" : "; they are \(known.joined(separator: ", "))"), field: name)
      }
      let value = try Handler.queryValue(values, schema: parameter.schema, name: name)
      do {
        result = result.setting(name, to: try validator.validate(value, against: parameter.schema, path: name))
      } catch {
        throw Problem.badRequest(error.message, field: error.field ?? name)
      }
    }
    for parameter in operation.queryParameters where parameter.required && result[parameter.name] == nil {
      throw Problem.badRequest("the query parameter \(parameter.name) is required", field: parameter.name)
    }
    return result
  }

  struct Handler: Sendable {
    let route: RESTRoute
    let operation: APIDescription.Operation
    let router: RESTRouter
    let variables: [(name: String, parameter: String)]

    init(route: RESTRoute, operation: APIDescription.Operation, router: RESTRouter) {
      self.route = route
      self.operation = operation
      self.router = router
      self.variables = RESTRouter.pathVariables(route.path)
    }

    func handle(_ request: Request, context: GatewayRequestContext) async throws -> Response {
      try context.require(route.scope)
      let validator = router.description.validator
      var input = try await body(request, context: context)

      for variable in variables {
        guard let raw = context.parameters.get(variable.parameter) else { continue }
        guard let text = raw.removingPercentEncoding, !text.utf8.contains(0) else {
          throw Problem.badRequest("\(variable.name) in the path is not valid text", field: variable.name)
        }
        let schema = operation.pathParameters.first { $0.name == variable.name }?.schema ?? .object([])
        input = input.setting(variable.name, to: try checked(.string(text), schema, variable.name, validator))
      }

      for (name, value) in try RESTRouter.queryParameters(request, operation: operation, validator: validator).members ?? [] {
        input = input.setting(name, to: value)
      }
      if let name = context.principal?.name {
        for field in route.callerFields { input = input.setting(field, to: .string(name)) }
      }

      let options = CallOptions.timeout(route.timeout ?? router.defaultTimeout)
      let reply = try await ProtoJSON.call(route.service) {
        try await route.call.invoke(router.clients, Array(input.text.utf8), options)
      }
      if let found = route.foundField {
        let answer = try? JSONParser.parse(reply)
        guard answer?[found]?.bool == true else { throw Problem.notFound(route.notFound ?? "not found") }
      }
      guard route.status != 204 else { return Response(status: .noContent) }
      var headers = HTTPFields()
      headers[.contentType] = "application/json"
      return Response(status: .init(code: route.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply)))
    }

    func checked(_ value: JSONNode, _ schema: JSONNode, _ name: String, _ validator: JSONSchemaValidator) throws -> JSONNode {
      do {
        return try validator.validate(value, against: schema, path: name)
      } catch {
        throw Problem.badRequest(error.message, field: error.field ?? name)
      }
    }

    /// The JSON body checked against the operation's schema; `{}` for an operation without one.
    func body(_ request: Request, context: GatewayRequestContext) async throws -> JSONNode {
      var request = request
      let buffer = try await request.collectBody(upTo: ProtoJSON.maxBody)
      let bytes = Array(buffer.readableBytesView)
      let blank = bytes.allSatisfy { [0x20, 0x09, 0x0A, 0x0D].contains($0) }
      guard let body = operation.body else {
        guard blank || bytes == Array("{}".utf8) || route.method == "get" || route.method == "delete" else {
          throw Problem.badRequest("this route takes no body (send none, or {})")
        }
        return .object([])
      }
      guard !blank else {
        if body.required { throw Problem.badRequest("the request body is empty; send a JSON object") }
        do {
          return try router.description.validator.validate(.object([]), against: body.schema)
        } catch {
          throw Problem.badRequest("the request body is empty, but \(error.message)", field: error.field)
        }
      }
      try ProtoJSON.requireJSON(request)
      let value: JSONNode
      do {
        value = try JSONParser.parse(bytes)
      } catch {
        throw Problem.badRequest(error.message, field: error.field)
      }
      do {
        return try router.description.validator.validate(value, against: body.schema)
      } catch {
        throw Problem.badRequest(error.message, field: error.field)
      }
    }

    /// A query parameter's text as the JSON value its schema asks for.
    static func queryValue(_ values: [String], schema: JSONNode, name: String) throws -> JSONNode {
      for value in values where value.utf8.contains(0) {
        throw Problem.badRequest(StringFieldCheck.holdsNUL(name), field: name)
      }
      if schema["type"]?.string == "array" {
        let itemSchema = schema["items"] ?? .object([])
        return .array(try values.map { try scalar($0, schema: itemSchema, name: name) })
      }
      guard values.count == 1 else { throw Problem.badRequest("\(name) is given \(values.count) times; give it once", field: name) }
      return try scalar(values[0], schema: schema, name: name)
    }

    static func scalar(_ text: String, schema: JSONNode, name: String) throws -> JSONNode {
      let types = schema["type"]?.items?.compactMap(\.string) ?? schema["type"]?.string.map { [$0] } ?? ["string"]
      if types.contains("integer") || types.contains("number") {
        let integer = text.wholeMatch(of: /-?(0|[1-9][0-9]*)/) != nil
        if integer || (types.contains("number") && Double(text) != nil && text.first != "+") { return .number(text) }
        if !types.contains("string") {
          throw Problem.badRequest("\(name) must be a whole number, not '\(text)'", field: name)
        }
      }
      if types.contains("boolean") {
        switch text {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: throw Problem.badRequest("\(name) must be true or false, not '\(text)'", field: name)
        }
      }
      return .string(text)
    }
  }
}
