/// The OpenAPI document, parsed once at start-up: the gateway takes each operation's path and
/// query parameters and its body schema from it and checks requests against them, so what is
/// documented is what is enforced.
struct APIDescription: Sendable {
  /// One operation's inputs as the document describes them.
  struct Operation: Sendable {
    struct Parameter: Sendable {
      var name: String
      var required: Bool
      var schema: JSONNode
    }

    var id: String
    var method: String
    var path: String
    var pathParameters: [Parameter]
    var queryParameters: [Parameter]
    /// nil when the operation takes no body.
    var body: (schema: JSONNode, required: Bool)?
  }

  let root: JSONNode
  let validator: JSONSchemaValidator
  let operations: [String: Operation]

  init(json: String) throws {
    let root: JSONNode
    do {
      root = try JSONParser.parse(Array(json.utf8))
    } catch {
      throw APIDescriptionError("the OpenAPI document does not parse: \(error.message)")
    }
    self.root = root
    self.validator = JSONSchemaValidator(document: root)
    try validator.compilePatterns()
    var operations: [String: Operation] = [:]
    for (path, item) in root["paths"]?.members ?? [] {
      for (method, operation) in item.members ?? [] {
        guard case .string(let id) = operation["operationId"] else { continue }
        var pathParameters: [Operation.Parameter] = []
        var queryParameters: [Operation.Parameter] = []
        for parameter in operation["parameters"]?.items ?? [] {
          guard let name = parameter["name"]?.string, let location = parameter["in"]?.string else { continue }
          let entry = Operation.Parameter(
            name: name, required: parameter["required"]?.bool ?? false, schema: parameter["schema"] ?? .object([]))
          if location == "path" { pathParameters.append(entry) } else if location == "query" { queryParameters.append(entry) }
        }
        var body: (JSONNode, Bool)?
        if let requestBody = operation["requestBody"], let schema = requestBody["content"]?["application/json"]?["schema"] {
          body = (schema, requestBody["required"]?.bool ?? false)
        }
        operations[id] = Operation(
          id: id, method: method, path: path, pathParameters: pathParameters, queryParameters: queryParameters, body: body)
      }
    }
    self.operations = operations
  }

  static let shared: Result<APIDescription, any Error> = Result { try APIDescription(json: OpenAPIDocument.json) }
}

struct APIDescriptionError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// The generated document (`OpenAPIDocument.json`, in Generated/).
enum OpenAPIDocument {}
