import AsyncHTTPClient
import CRMSandbox
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1

// `crm-sandbox`: the local Airtable-style server (CRMSandbox) as a process, for the local stack and
// the compose demo. It starts with one base holding a Contacts table and serves until killed.
// `crm-sandbox probe [HOST:PORT]` exits 0 when a running one answers its schema request.
//   CRM_SANDBOX_TOKEN  the bearer token clients must send (required)
//   CRM_SANDBOX_HOST   address to listen on (default 127.0.0.1)
//   CRM_SANDBOX_PORT   port (default 7200; 0 = any free port, printed at start)
//   CRM_SANDBOX_BASE   the base id (default appHeraldDemo0001)
func fail(_ message: String, status: Int32 = 1) -> Never {
  FileHandle.standardError.write(Data("crm-sandbox: \(message)\n".utf8))
  exit(status)
}

let settings = Settings()
let arguments = Array(CommandLine.arguments.dropFirst())
do {
  let token = try settings.string("CRM_SANDBOX_TOKEN", purpose: "the bearer token clients must send")
  let host = settings.string("CRM_SANDBOX_HOST", default: "127.0.0.1")
  let port = try settings.int("CRM_SANDBOX_PORT", default: 7200, range: 0...65535)
  let base = settings.string("CRM_SANDBOX_BASE", default: "appHeraldDemo0001")
  switch arguments.first {
  case nil:
    let sandbox = CRMSandbox(token: token)
    let table = sandbox.addTable(
      base: base, name: "Contacts",
      fields: [
        ("Email", .email), ("First Name", .singleLineText), ("Last Name", .singleLineText), ("Phone", .phoneNumber),
        ("Engagement", .singleLineText), ("Last Messaged", .dateTime), ("Last Modified", .lastModifiedTime),
      ])
    try await withCRMSandbox(sandbox, host: host, port: port) { port in
      // Unbuffered, so a log file or a test sees it at once.
      FileHandle.standardOutput.write(Data("crm-sandbox: serving base \(base), table Contacts (\(table)) on http://\(host):\(port)\n".utf8))
      while true { try await Task.sleep(for: .seconds(3600)) }
    }
  case "probe" where arguments.count <= 2:
    let address = arguments.count == 2 ? arguments[1] : "127.0.0.1:\(port)"
    guard ServiceAddress(address) != nil else { fail("'probe' needs HOST:PORT, got '\(address)'", status: 2) }
    var request = HTTPClientRequest(url: "http://\(address)/v0/meta/bases/\(base)/tables")
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(3))
    print("crm-sandbox at \(address): HTTP \(response.status.code)")
    exit(response.status == .ok ? 0 : 1)
  default:
    fail("usage: crm-sandbox [probe [HOST:PORT]], got '\(arguments.joined(separator: " "))'", status: 2)
  }
} catch {
  fail("\(error)")
}
