import Foundation
import HeraldProtos
import NIOCore

/// Reads a bulk import body as it arrives — CSV (RFC 4180, with a header row) or JSON lines — and
/// turns each record into an `ImportRow`. A record that cannot be read becomes a row carrying the
/// error (with its line number), so that the campaign service reports it beside its own checks and
/// the other rows are kept.
package struct ImportReader {
  package enum Format: String, Sendable {
    case csv, ndjson
  }

  static let maxRecordBytes = 64 * 1024

  let format: Format
  private var header: [String]?
  private var line = 1
  // CSV record state.
  private var fields: [[UInt8]] = []
  private var field: [UInt8] = []
  private var recordBytes = 0
  private var recordLine = 1
  private var inQuotes = false
  private var quoteSeen = false
  private var fieldStarted = false
  private var oversized = false

  package init(format: Format) {
    self.format = format
  }

  /// Consumes a chunk of the body; returns the rows it completed.
  package mutating func read(_ buffer: ByteBuffer) throws -> [Herald_Campaign_V1_ImportRow] {
    var rows: [Herald_Campaign_V1_ImportRow] = []
    for byte in buffer.readableBytesView { try consume(byte, into: &rows) }
    return rows
  }

  /// Ends the body; returns the last row if it had no final newline.
  package mutating func finish() throws -> [Herald_Campaign_V1_ImportRow] {
    var rows: [Herald_Campaign_V1_ImportRow] = []
    if inQuotes && !quoteSeen {
      rows.append(Self.failed(line: recordLine, field: "row", "the quoted field opened on line \(recordLine) is never closed"))
    } else if !field.isEmpty || !fields.isEmpty || fieldStarted {
      try endRecord(into: &rows)
    }
    if header == nil {
      throw Problem.badRequest(
        format == .csv
          ? "the import is empty; a CSV import starts with a header row such as email,first_name"
          : "the import is empty; send one JSON object per line")
    }
    return rows
  }

  private mutating func consume(_ byte: UInt8, into rows: inout [Herald_Campaign_V1_ImportRow]) throws {
    recordBytes += 1
    if recordBytes > Self.maxRecordBytes && !oversized {
      oversized = true
      field.removeAll()
      fields.removeAll()
    }
    if format == .ndjson {
      if byte == UInt8(ascii: "\n") {
        try endRecord(into: &rows)
        line += 1
      } else if !oversized {
        field.append(byte)
      }
      return
    }
    let quote = UInt8(ascii: "\"")
    let comma = UInt8(ascii: ",")
    let newline = UInt8(ascii: "\n")
    let carriageReturn = UInt8(ascii: "\r")
    if inQuotes && !quoteSeen {
      if byte == quote {
        quoteSeen = true
      } else {
        if byte == newline { line += 1 }
        if !oversized { field.append(byte) }
      }
      return
    }
    if quoteSeen {
      quoteSeen = false
      if byte == quote {  // "" inside quotes is one quote
        if !oversized { field.append(quote) }
        return
      }
      inQuotes = false
    }
    switch byte {
    case quote where !fieldStarted:
      inQuotes = true
      fieldStarted = true
    case comma:
      endField()
    case newline:
      try endRecord(into: &rows)
      line += 1
    case carriageReturn:
      break
    default:
      fieldStarted = true
      if !oversized { field.append(byte) }
    }
  }

  private mutating func endField() {
    fields.append(field)
    field.removeAll(keepingCapacity: true)
    fieldStarted = false
    inQuotes = false
  }

  private mutating func endRecord(into rows: inout [Herald_Campaign_V1_ImportRow]) throws {
    defer {
      fields.removeAll(keepingCapacity: true)
      field.removeAll(keepingCapacity: true)
      recordBytes = 0
      recordLine = line + 1
      oversized = false
      fieldStarted = false
      inQuotes = false
    }
    if oversized {
      if header == nil && format == .csv { throw Problem.badRequest("the header row is longer than \(Self.maxRecordBytes) bytes") }
      header = header ?? []
      rows.append(Self.failed(line: recordLine, field: "row", "the row is longer than \(Self.maxRecordBytes) bytes"))
      return
    }
    switch format {
    case .ndjson:
      let text = field
      guard !text.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) else { return }
      header = header ?? []
      rows.append(Self.row(json: text, line: recordLine))
    case .csv:
      endField()
      if fields == [[]] { return }  // a blank line
      guard let header else {
        guard let texts = Self.texts(fields) else {
          throw Problem.badRequest("the CSV header is not valid UTF-8 text, or holds a NUL character; save the file as UTF-8")
        }
        let names = texts.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard names.contains("email") || names.contains("phone") else {
          throw Problem.badRequest("the CSV header needs an email or a phone column (it has: \(names.joined(separator: ", ")))")
        }
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
          throw Problem.badRequest("the CSV header names column '\(duplicate)' twice")
        }
        if let empty = names.firstIndex(of: "") {
          throw Problem.badRequest("column \(empty + 1) of the CSV header has no name")
        }
        self.header = names
        return
      }
      rows.append(Self.row(csv: fields, header: header, line: recordLine))
    }
  }

  /// The fields as text; nil when one is not valid UTF-8 or holds NUL.
  static func texts(_ fields: [[UInt8]]) -> [String]? {
    var texts: [String] = []
    for field in fields {
      guard !field.contains(0), let text = String(validating: field, as: UTF8.self) else { return nil }
      texts.append(text)
    }
    return texts
  }

  static func failed(line: Int, field: String, _ message: String) -> Herald_Campaign_V1_ImportRow {
    var row = Herald_Campaign_V1_ImportRow()
    row.row = Int64(line)
    row.error = message
    row.errorField = field
    return row
  }

  static func flag(_ text: String) -> Bool? {
    switch text.trimmingCharacters(in: .whitespaces).lowercased() {
    case "true", "yes", "y", "1": true
    case "false", "no", "n", "0", "": false
    default: nil
    }
  }

  static func row(csv raw: [[UInt8]], header: [String], line: Int) -> Herald_Campaign_V1_ImportRow {
    guard raw.count == header.count else {
      return failed(line: line, field: "row", "the row has \(raw.count) fields; the header has \(header.count)")
    }
    var fields: [String] = []
    for (name, bytes) in zip(header, raw) {
      if bytes.contains(0) { return failed(line: line, field: name, "\(name) holds a NUL character (U+0000), which cannot be stored") }
      guard let text = String(validating: bytes, as: UTF8.self) else {
        return failed(line: line, field: name, "\(name) is not valid UTF-8 text (save the file as UTF-8)")
      }
      fields.append(text)
    }
    var subscriber = Herald_Campaign_V1_CreateSubscriberRequest()
    var attributes: [String: String] = [:]
    for (name, value) in zip(header, fields) {
      switch name {
      case "email": subscriber.email = value
      case "phone": subscriber.phone = value
      case "whatsapp": subscriber.whatsapp = value
      case "first_name": subscriber.firstName = value
      case "last_name": subscriber.lastName = value
      case "email_consent", "sms_consent", "whatsapp_consent":
        guard let subscribed = flag(value) else {
          return failed(line: line, field: name, "\(name) '\(value)' must be true or false (yes/no, 1/0)")
        }
        switch name {
        case "email_consent": subscriber.emailConsent.subscribed = subscribed
        case "sms_consent": subscriber.smsConsent.subscribed = subscribed
        default: subscriber.whatsappConsent.subscribed = subscribed
        }
      case "email_consent_source": subscriber.emailConsent.source = value
      case "sms_consent_source": subscriber.smsConsent.source = value
      case "whatsapp_consent_source": subscriber.whatsappConsent.source = value
      // One device's push token a row (columns push_platform, push_token, push_app_id).
      case "push_platform", "push_token", "push_app_id":
        guard !value.isEmpty else { continue }
        if subscriber.pushTokens.isEmpty { subscriber.pushTokens = [Herald_Campaign_V1_PushTokenInput()] }
        switch name {
        case "push_platform": subscriber.pushTokens[0].platform = value
        case "push_token": subscriber.pushTokens[0].token = value
        default: subscriber.pushTokens[0].appID = value
        }
      default:
        if !value.isEmpty { attributes[name] = value }
      }
    }
    if !attributes.isEmpty { subscriber.attributesJson = jsonObject(attributes) }
    var row = Herald_Campaign_V1_ImportRow()
    row.row = Int64(line)
    row.subscriber = subscriber
    return row
  }

  /// The extra columns as a JSON object, keys sorted (written by `JSONNode`: Foundation's
  /// serialiser costs more than the rest of a row's reading).
  package static func jsonObject(_ attributes: [String: String]) -> String {
    JSONNode.object(attributes.keys.sorted().map { (key: $0, value: .string(attributes[$0]!)) }).text
  }

  static func row(json bytes: [UInt8], line: Int) -> Herald_Campaign_V1_ImportRow {
    let parsed: JSONNode
    do {
      parsed = try JSONParser.parse(bytes)
    } catch {
      return failed(line: line, field: error.field ?? "row", error.message)
    }
    guard let members = parsed.members else { return failed(line: line, field: "row", "the line is not a JSON object") }
    var subscriber = Herald_Campaign_V1_CreateSubscriberRequest()
    for (key, value) in members {
      switch (key, value) {
      case ("email", .string(let text)): subscriber.email = text
      case ("phone", .string(let text)): subscriber.phone = text
      case ("whatsapp", .string(let text)): subscriber.whatsapp = text
      case ("first_name", .string(let text)): subscriber.firstName = text
      case ("last_name", .string(let text)): subscriber.lastName = text
      case ("attributes", .object): subscriber.attributesJson = value.text
      case ("push_tokens", .array(let items)):
        // [{"platform": "apns", "token": "...", "app_id": "..."}]
        for (index, item) in items.enumerated() {
          var token = Herald_Campaign_V1_PushTokenInput()
          guard case .object(let fields) = item else {
            return failed(line: line, field: "push_tokens[\(index)]", "push_tokens[\(index)] must be an object with platform and token")
          }
          for (name, value) in fields {
            guard case .string(let text) = value, ["platform", "token", "app_id"].contains(name) else {
              return failed(
                line: line, field: "push_tokens[\(index)].\(name)",
                "push_tokens[\(index)].\(name) is not a string field of a push token (platform, token, app_id)")
            }
            switch name {
            case "platform": token.platform = text
            case "token": token.token = text
            default: token.appID = text
            }
          }
          subscriber.pushTokens.append(token)
        }
      case ("push_tokens", _):
        return failed(line: line, field: key, "push_tokens must be an array of {\"platform\", \"token\", \"app_id\"}")
      case ("attributes_json", .string(let text)): subscriber.attributesJson = text
      case ("email_consent", _), ("sms_consent", _), ("whatsapp_consent", _):
        var consent = Herald_Campaign_V1_ConsentInput()
        let wrong = failed(line: line, field: key, "\(key) must be true, false or {\"subscribed\": true, \"source\": \"...\"}")
        switch value {
        case .bool(let subscribed): consent.subscribed = subscribed
        case .number(let text) where text == "0" || text == "1": consent.subscribed = text == "1"
        case .object(let fields):
          guard case .bool(let subscribed)? = value["subscribed"], fields.allSatisfy({ $0.key == "subscribed" || $0.key == "source" })
          else { return wrong }
          consent.subscribed = subscribed
          if let source = value["source"] {
            guard case .string(let text) = source else { return wrong }
            consent.source = text
          }
        default: return wrong
        }
        switch key {
        case "email_consent": subscriber.emailConsent = consent
        case "sms_consent": subscriber.smsConsent = consent
        default: subscriber.whatsappConsent = consent
        }
      case ("email", _), ("phone", _), ("whatsapp", _), ("first_name", _), ("last_name", _), ("attributes_json", _):
        return failed(line: line, field: key, "\(key) must be a string")
      case ("attributes", _):
        return failed(line: line, field: key, "attributes must be a JSON object")
      default:
        return failed(line: line, field: key, "unknown field '\(key)'")
      }
    }
    var row = Herald_Campaign_V1_ImportRow()
    row.row = Int64(line)
    row.subscriber = subscriber
    return row
  }
}
