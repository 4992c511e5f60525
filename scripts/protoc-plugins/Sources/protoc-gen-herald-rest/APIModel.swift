import SwiftProtobuf
import SwiftProtobufPluginLibrary

/// One REST route bound to an RPC by `google.api.http` (or one of its additional bindings).
struct Operation {
  var method: MethodDescriptor
  /// `get`, `post`, `put`, `patch` or `delete`.
  var verb: String
  /// The OpenAPI path, e.g. `/v1/subscribers/{id}`.
  var path: String
  /// The request fields bound to the path's variables, in order.
  var pathFields: [FieldDescriptor]
  /// `*` (every field not in the path comes from the JSON body) or empty (they come from the
  /// query string).
  var body: String
  var route: Herald_Api_V1_Route
  /// `campaign`, `delivery`, ..., `gateway`: the service that answers.
  var service: String
  /// Unique in the document: `campaign.CreateSubscriber` (a second binding gets a suffix).
  var operationID: String

  var status: Int { route.noContent ? 204 : route.status == 0 ? 200 : Int(route.status) }
  var scope: String { route.scope.isEmpty ? "read" : route.scope }
  var hasBody: Bool { body == "*" }

  /// The request fields a REST client gives, in the body or the query string.
  var clientFields: [FieldDescriptor] {
    let bound = Set(pathFields.map(\.number))
    return method.inputType.fields.filter { field in
      !bound.contains(field.number) && !field.rules.internal && !field.rules.caller
    }
  }

  var callerFields: [FieldDescriptor] { method.inputType.fields.filter { $0.rules.caller } }
}

extension FieldDescriptor {
  var rules: Herald_Api_V1_Field { options.Herald_Api_V1_field }
}

/// The REST operations of the services in the files protoc was given.
struct APIModel {
  var operations: [Operation] = []
  var services: [ServiceDescriptor] = []

  init(files: [FileDescriptor]) throws {
    var seenIDs = Set<String>()
    for file in files where file.package.hasPrefix("herald.") && file.package != "herald.api.v1" {
      for service in file.services {
        let serviceName = try Self.serviceName(of: file.package)
        var bound = false
        for method in service.methods where method.options.hasGoogle_Api_http {
          let rule = method.options.Google_Api_http
          for (index, binding) in ([rule] + rule.additionalBindings).enumerated() {
            guard !method.clientStreaming, !method.serverStreaming else {
              throw GeneratorError("\(method.fullName): a streaming RPC cannot be bound to REST by google.api.http")
            }
            let (verb, path) = try Self.verbAndPath(of: binding, method: method)
            guard binding.body == "*" || binding.body.isEmpty else {
              throw GeneratorError("\(method.fullName): body must be \"*\" or empty, not \"\(binding.body)\"")
            }
            if binding.body == "*" && (verb == "get" || verb == "delete") {
              throw GeneratorError("\(method.fullName): a \(verb.uppercased()) route takes no body")
            }
            let pathFields = try Self.variables(in: path).map { name -> FieldDescriptor in
              guard let field = method.inputType.fields.first(where: { $0.name == name }),
                field.type == .string, !field.isRepeated
              else {
                throw GeneratorError("\(method.fullName): path variable {\(name)} is not a string field of \(method.inputType.fullName)")
              }
              return field
            }
            var id = "\(serviceName).\(method.name)"
            if index > 0 { id += "\(index + 1)" }
            guard seenIDs.insert(id).inserted else { throw GeneratorError("operation id \(id) is used twice") }
            let operation = Operation(
              method: method, verb: verb, path: path, pathFields: pathFields, body: binding.body,
              route: method.options.Herald_Api_V1_route, service: serviceName, operationID: id)
            try Self.check(operation)
            operations.append(operation)
            bound = true
          }
        }
        if bound { services.append(service) }
      }
    }
  }

  /// `herald.campaign.v1` → `campaign`.
  static func serviceName(of package: String) throws -> String {
    let parts = package.split(separator: ".")
    guard parts.count == 3, parts[0] == "herald" else {
      throw GeneratorError("package \(package) is not herald.<service>.<version>")
    }
    return String(parts[1])
  }

  static func verbAndPath(of rule: Google_Api_HttpRule, method: MethodDescriptor) throws -> (String, String) {
    switch rule.pattern {
    case .get(let path): return ("get", path)
    case .post(let path): return ("post", path)
    case .put(let path): return ("put", path)
    case .patch(let path): return ("patch", path)
    case .delete(let path): return ("delete", path)
    case .custom, .none: throw GeneratorError("\(method.fullName): only get, post, put, patch and delete bindings are supported")
    }
  }

  /// The `{name}` variables of a path template; `{name=pattern}` and nested names are refused.
  static func variables(in path: String) throws -> [String] {
    var names: [String] = []
    var rest = Substring(path)
    while let open = rest.firstIndex(of: "{") {
      guard let close = rest[open...].firstIndex(of: "}") else { throw GeneratorError("path \(path) has an unclosed {") }
      let name = String(rest[rest.index(after: open)..<close])
      guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
        throw GeneratorError("path \(path): variable {\(name)} must be a plain field name")
      }
      names.append(name)
      rest = rest[rest.index(after: close)...]
    }
    return names
  }

  static func check(_ operation: Operation) throws {
    let name = operation.method.fullName
    if !operation.hasBody {
      for field in operation.clientFields where field.type == .message && !field.isRepeated {
        let typeName = field.messageType.fullName
        guard typeName == "google.protobuf.Timestamp" else {
          throw GeneratorError("\(name): field \(field.name) (\(typeName)) cannot be a query parameter; use a body")
        }
      }
    }
    if !operation.route.foundField.isEmpty {
      guard let field = operation.method.outputType.fields.first(where: { $0.name == operation.route.foundField }),
        field.type == .bool
      else {
        throw GeneratorError("\(name): found_field \(operation.route.foundField) is not a bool field of the reply")
      }
    }
  }
}
