import Foundation
import SwiftProtobufPluginLibrary

/// Writes the OpenAPI 3.1 document of the REST API: every operation bound by `google.api.http`,
/// with the routes described by hand beside the protos (`extra`: CSV import, webhooks, health,
/// status, metrics) merged in.
struct OpenAPIBuilder {
  let model: APIModel
  let extra: OrderedJSON
  /// Messages the extra routes answer, whose output schemas are written too.
  var messages: [Descriptor] = []

  /// Error answers every operation can give; those marked `body` only when it reads a body.
  static let errors: [(status: String, name: String, body: Bool, description: String)] = [
    ("400", "BadRequest", false, "The request is malformed or a field is not valid; `field` names it."),
    ("401", "Unauthorized", false, "No API key, or one that is not valid or was revoked."),
    ("403", "Forbidden", false, "The API key lacks the scope this route needs."),
    ("404", "NotFound", false, "What the request names does not exist."),
    ("409", "Conflict", false, "The request conflicts with the current state (a status, a run in progress, a duplicate)."),
    ("413", "ContentTooLarge", true, "The body is larger than 1 MiB."),
    ("415", "UnsupportedMediaType", true, "The body is not `application/json`."),
    ("422", "UnprocessableContent", true, "The `Idempotency-Key` was used for a different request."),
    ("429", "TooManyRequests", false, "A limit was reached; try again later."),
    ("500", "InternalServerError", false, "Herald failed; the answer names the request id to find in the logs."),
    ("503", "ServiceUnavailable", false, "The service that answers this route is not available."),
    ("504", "GatewayTimeout", false, "The service did not answer in time."),
  ]

  func build() throws -> OrderedJSON {
    let schemas = SchemaBuilder(operations: model.operations, outputs: messages)
    for message in messages { _ = try schemas.reference(message, .output) }
    var paths: [(String, OrderedJSON)] = []
    for operation in model.operations {
      let item = try pathItem(operation, schemas: schemas)
      if let index = paths.firstIndex(where: { $0.0 == operation.path }) {
        paths[index].1 = paths[index].1.merging(item)
      } else {
        paths.append((operation.path, item))
      }
    }
    for (path, item) in extra["paths"]?.objectPairs ?? [] {
      if let index = paths.firstIndex(where: { $0.0 == path }) {
        paths[index].1 = paths[index].1.merging(item)
      } else {
        paths.append((path, item))
      }
    }
    paths.sort { $0.0 < $1.0 }

    var componentSchemas = schemas.components
    for (name, schema) in extra["components"]?["schemas"]?.objectPairs ?? [] {
      guard componentSchemas[name] == nil else { throw GeneratorError("schema \(name) is described twice") }
      componentSchemas[name] = schema
    }
    componentSchemas["Problem"] = Self.problem

    var responses: [(String, OrderedJSON)] = []
    for error in Self.errors {
      responses.append(
        (
          error.name,
          .object([
            ("description", .string(error.description)),
            ("content", .object([("application/problem+json", .object([("schema", Self.ref("Problem"))]))])),
          ])
        ))
    }

    var tags: [OrderedJSON] = model.services.map { service -> OrderedJSON in
      var tag = OrderedJSON.object([("name", .string((try? APIModel.serviceName(of: service.file.package)) ?? service.name))])
      if let description = SchemaBuilder.comment(service.sourceCodeInfoLocation) { tag.set("description", .string(description)) }
      return tag
    }
    if case .array(let extraTags) = extra["tags"] { tags += extraTags }

    return .object([
      ("openapi", .string("3.1.0")),
      ("info", extra["info"] ?? .object([("title", .string("Herald")), ("version", .string("1"))])),
      ("security", .array([.object([("bearer", .array([]))]), .object([("apiKey", .array([]))])])),
      ("tags", .array(tags)),
      ("paths", .object(paths)),
      (
        "components",
        .object([
          (
            "securitySchemes",
            .object([
              (
                "bearer",
                .object([
                  ("type", .string("http")), ("scheme", .string("bearer")),
                  ("description", .string("An API key: `Authorization: Bearer hrld_…`.")),
                ])
              ),
              (
                "apiKey",
                .object([
                  ("type", .string("apiKey")), ("in", .string("header")), ("name", .string("X-API-Key")),
                  ("description", .string("The same API key in the X-API-Key header.")),
                ])
              ),
            ])
          ),
          ("responses", .object(responses)),
          ("schemas", .object(componentSchemas.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })),
        ])
      ),
    ])
  }

  static func ref(_ name: String) -> OrderedJSON {
    .object([("$ref", .string("#/components/schemas/\(name)"))])
  }

  /// RFC 9457 problem details, as every error is answered.
  static let problem = OrderedJSON.object([
    ("type", .string("object")),
    ("description", .string("An error (RFC 9457), naming the request field it is about when there is one.")),
    (
      "properties",
      .object([
        ("type", .object([("type", .string("string"))])),
        ("title", .object([("type", .string("string"))])),
        ("status", .object([("type", .string("integer"))])),
        ("detail", .object([("type", .string("string"))])),
        ("instance", .object([("type", .string("string"))])),
        ("field", .object([("type", .string("string")), ("description", .string("The request field the error is about."))])),
      ])
    ),
    ("required", .array([.string("type"), .string("title"), .string("status"), .string("detail")])),
    ("additionalProperties", .bool(false)),
  ])

  private func pathItem(_ operation: Operation, schemas: SchemaBuilder) throws -> OrderedJSON {
    let method = operation.method
    var body = OrderedJSON.object([("operationId", .string(operation.operationID))])
    body.set("tags", .array([.string(operation.route.tag.isEmpty ? operation.service : operation.route.tag)]))
    if let comment = SchemaBuilder.comment(method.sourceCodeInfoLocation) {
      let summary = comment.split(separator: "\n").first.map(String.init) ?? comment
      body.set("summary", .string(Self.firstSentence(summary)))
      body.set("description", .string(comment))
    } else {
      body.set("summary", .string(method.name))
    }
    body.set("x-herald-scope", .string(operation.scope))

    var parameters: [OrderedJSON] = []
    for field in operation.pathFields {
      var parameter = OrderedJSON.object([
        ("name", .string(field.name)), ("in", .string("path")), ("required", .bool(true)),
        ("schema", try schemas.schema(of: field, .input)),
      ])
      if let description = SchemaBuilder.comment(field.sourceCodeInfoLocation) { parameter.set("description", .string(description)) }
      parameters.append(parameter)
    }
    if !operation.hasBody {
      for field in operation.clientFields {
        var schema = try schemas.schema(of: field, .input)
        let description = schema["description"]
        schema.remove("description")
        var parameter = OrderedJSON.object([
          ("name", .string(field.name)), ("in", .string("query")), ("required", .bool(field.rules.required)),
          ("schema", schema),
        ])
        if let description { parameter.set("description", description) }
        parameters.append(parameter)
      }
    }
    if !parameters.isEmpty { body.set("parameters", .array(parameters)) }

    if operation.hasBody {
      let excluded = Set(operation.pathFields.map(\.number))
      let schema: OrderedJSON
      if excluded.isEmpty {
        schema = try schemas.reference(method.inputType, .input)
      } else {
        schema = try schemas.objectSchema(method.inputType, .input, leaving: excluded)
      }
      let properties =
        excluded.isEmpty
        ? operation.clientFields.count : (schema["properties"]?.objectPairs.count ?? 0)
      if properties > 0 {
        // Required when an empty object does not fit: a required field, or a rule of the message
        // that asks for one (e.g. anyOf over required fields).
        let rules = method.inputType.options.Herald_Api_V1_schema.schemaJson
        let required =
          (excluded.isEmpty ? operation.clientFields.contains { $0.rules.required } : schema["required"] != nil)
          || rules.contains("\"required\"")
        body.set(
          "requestBody",
          .object([
            ("required", .bool(required)),
            ("content", .object([("application/json", .object([("schema", schema)]))])),
          ]))
      }
    }

    var responses: [(String, OrderedJSON)] = []
    if operation.status == 204 {
      responses.append(("204", .object([("description", .string("Done; no content."))])))
    } else {
      responses.append(
        (
          String(operation.status),
          .object([
            ("description", .string(Self.successDescription(operation.status))),
            ("content", .object([("application/json", .object([("schema", try schemas.reference(method.outputType, .output))]))])),
          ])
        ))
    }
    let writes = operation.verb == "post" || operation.verb == "patch" || operation.verb == "put"
    for error in Self.errors where !error.body || (operation.hasBody || writes) {
      responses.append((error.status, .object([("$ref", .string("#/components/responses/\(error.name)"))])))
    }
    body.set("responses", .object(responses))
    return .object([(operation.verb, body)])
  }

  static func successDescription(_ status: Int) -> String {
    switch status {
    case 201: "Created."
    case 202: "Accepted; the work goes on in the background."
    default: "Done."
    }
  }

  static func firstSentence(_ text: String) -> String {
    if let end = text.range(of: ". ") { return String(text[..<end.lowerBound]) + "." }
    return text
  }
}
