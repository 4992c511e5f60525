import CRMSandbox
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// One request a local HTTP server received.
package struct ReceivedRequest: Sendable {
  package var path: String
  package var headers: [String: String]
  package var body: Data

  package var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
  package var form: [String: String] {
    var components = URLComponents()
    components.percentEncodedQuery = String(decoding: body, as: UTF8.self)
    return Dictionary(
      (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { first, _ in first })
  }
}

/// What the local server answers.
package struct SinkReply: Sendable {
  package var status: Int
  package var headers: [String: String]
  package var body: String

  package init(status: Int = 200, headers: [String: String] = [:], body: String = "{}") {
    self.status = status
    self.headers = headers
    self.body = body
  }
}

/// Requests received so far, in order.
package final class RequestLog: Sendable {
  private let storage = Mutex<[ReceivedRequest]>([])
  package init() {}
  package func append(_ request: ReceivedRequest) { storage.withLock { $0.append(request) } }
  package var all: [ReceivedRequest] { storage.withLock { $0 } }
  package var count: Int { storage.withLock { $0.count } }
}

/// A real HTTP server (Hummingbird) on a free loopback port for the duration of `body`; every
/// POST is logged and answered by `reply`.
package func withHTTPSink<T: Sendable>(
  reply: @escaping @Sendable (ReceivedRequest) async -> SinkReply = { _ in SinkReply() },
  _ body: (_ port: Int, _ log: RequestLog) async throws -> T
) async throws -> T {
  let log = RequestLog()
  let router = Router()
  router.post("**") { request, _ -> Response in
    let bytes = try await request.body.collect(upTo: 4 << 20)
    var headers: [String: String] = [:]
    for field in request.headers { headers[field.name.rawName] = field.value }
    let received = ReceivedRequest(path: request.uri.path, headers: headers, body: Data(bytes.readableBytesView))
    log.append(received)
    let answer = await reply(received)
    var fields = HTTPFields()
    fields[.contentType] = "application/json"
    for (name, value) in answer.headers {
      if let field = HTTPField.Name(name) { fields[field] = value }
    }
    return Response(
      status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
  }
  return try await withListeningServer(router, label: "test.http-sink") { port in try await body(port, log) }
}

/// A real SMTP server (Python's aiosmtpd) on loopback, started for the duration of `body`. It
/// writes each accepted message as a JSON line (from, to, idempotency key, subject, decoded body
/// — the HTML part of a multipart message — and text/plain part, content type, the message as
/// received, whether TLS and AUTH were used). Recipients whose local part starts with `bounce` get 550 at
/// RCPT, `later` get 451. With `username`, AUTH is required (only LOGIN offered with `loginOnly`);
/// with `tls`, STARTTLS is offered with a fresh self-signed certificate for `localhost`, whose PEM
/// is passed to `body`. SMTPUTF8 (RFC 6531) is offered only with `smtpUTF8`.
package struct SMTPSink: Sendable {
  package var port: Int
  package var certificatePEM: String?
  let journal: String

  package struct Received: Sendable {
    package var from: String
    package var to: [String]
    package var key: String
    package var subject: String
    package var body: String
    /// The text/plain part (the whole body of a text message).
    package var text: String
    /// The top-level content type, e.g. multipart/alternative.
    package var contentType: String
    /// The message's bytes as the server received them (after DATA's dot-unstuffing).
    package var raw: Data
    package var tls: Bool
    package var authenticated: Bool
    /// MAIL FROM's parameters (e.g. BODY=8BITMIME, SMTPUTF8).
    package var mailOptions: [String]
  }

  /// SMTP connections opened to it so far.
  package var connections: Int {
    ((try? String(contentsOfFile: journal + ".connections", encoding: .utf8)) ?? "").split(separator: "\n").count
  }

  package var messages: [Received] {
    guard let text = try? String(contentsOfFile: journal, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
      guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
      return Received(
        from: object["from"] as? String ?? "", to: object["to"] as? [String] ?? [], key: object["key"] as? String ?? "",
        subject: object["subject"] as? String ?? "", body: object["body"] as? String ?? "",
        text: object["text"] as? String ?? "", contentType: object["content_type"] as? String ?? "",
        raw: Data(base64Encoded: object["raw"] as? String ?? "") ?? Data(), tls: object["tls"] as? Bool ?? false,
        authenticated: object["auth"] as? Bool ?? false, mailOptions: object["mail_options"] as? [String] ?? [])
    }
  }
}

package func withSMTPSink<T: Sendable>(
  username: String? = nil, password: String? = nil, tls: Bool = false, loginOnly: Bool = false, smtpUTF8: Bool = false,
  _ body: (SMTPSink) async throws -> T
) async throws -> T {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-smtp-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: folder) }
  let script = folder + "/sink.py"
  try smtpSinkScript.write(toFile: script, atomically: true, encoding: .utf8)
  var certificate: String?
  if tls {
    try PostgresTools.run(
      "/usr/bin/openssl",
      [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        "-days", "1", "-keyout", folder + "/key.pem", "-out", folder + "/cert.pem",
      ])
    certificate = try String(contentsOfFile: folder + "/cert.pem", encoding: .utf8)
  }
  let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/env"
  let prefix = python == "/usr/bin/env" ? ["python3"] : []
  let process = try SpawnedProcess(
    python,
    prefix + [
      script, folder + "/journal.jsonl", folder + "/port", username ?? "", password ?? "", tls ? folder : "",
      loginOnly ? "login-only" : "", smtpUTF8 ? "smtputf8" : "",
    ],
    output: folder + "/sink.log")
  defer { process.kill() }
  try await eventually(timeout: .seconds(20), "the SMTP sink to listen") {
    if !process.isRunning {
      let log = (try? String(contentsOfFile: folder + "/sink.log", encoding: .utf8)) ?? ""
      throw TestSetupError("the SMTP sink (aiosmtpd) stopped: \(log) — run scripts/test, which installs it")
    }
    return FileManager.default.fileExists(atPath: folder + "/port")
  }
  let portText = try String(contentsOfFile: folder + "/port", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
  guard let port = Int(portText) else { throw TestSetupError("the SMTP sink wrote port '\(portText)'") }
  return try await body(SMTPSink(port: port, certificatePEM: certificate, journal: folder + "/journal.jsonl"))
}

/// A Herald program (`delivery`, `ratelimit`, ...) built next to the test bundle
/// (`swift build --build-tests` builds them all).
package func builtExecutable(_ name: String) throws -> String {
  let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  for candidate in [folder, folder.deletingLastPathComponent()] {
    let path = candidate.appendingPathComponent(name).path
    if FileManager.default.isExecutableFile(atPath: path) { return path }
  }
  throw TestSetupError("the \(name) executable is not built next to \(folder.path): run `swift build --build-tests`")
}

/// A child process started with posix_spawn, killed (SIGKILL) by `kill()`. A Herald process
/// started with an environment serves its metrics on an ephemeral port unless the environment
/// names one (`HERALD_METRICS_PORT`), so that parallel tests never compete for a port.
package final class SpawnedProcess: Sendable {
  package let pid: pid_t

  package init(_ executable: String, _ arguments: [String], output: String, environment: [String: String]? = nil) throws {
    var environment = environment
    if environment != nil, environment?["HERALD_METRICS_PORT"] == nil { environment?["HERALD_METRICS_PORT"] = "0" }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let env = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { env?.forEach { free($0) } }
    var pid = pid_t()
    let spawned =
      if var env { posix_spawn(&pid, executable, &actions, nil, argv, &env) } else {
        posix_spawn(&pid, executable, &actions, nil, argv, environ)
      }
    guard spawned == 0 else {
      throw TestSetupError("could not start \(executable): \(String(cString: strerror(spawned)))")
    }
    self.pid = pid
  }

  package var isRunning: Bool {
    var status: Int32 = 0
    return waitpid(pid, &status, WNOHANG) == 0
  }

  /// Waits for the child to end; returns its wait status.
  @discardableResult
  package func wait() -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    return status
  }

  /// Waits for the child to end without blocking a thread of the concurrency pool; returns its
  /// exit status (128 + the signal's number when a signal ended it).
  package func exitCode() async throws -> Int32 {
    var status: Int32 = 0
    while true {
      let reaped = waitpid(pid, &status, WNOHANG)
      if reaped == pid { break }
      if reaped == -1 && errno != EINTR { throw TestSetupError("waitpid(\(pid)): \(String(cString: strerror(errno)))") }
      try await Task.sleep(for: .milliseconds(20))
    }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  }

  /// Runs a program to its end; returns its exit status and what it wrote to stdout and stderr.
  package static func run(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil
  ) async throws -> (status: Int32, output: String) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("herald-run-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let status = try await SpawnedProcess(executable, arguments, output: output, environment: environment).exitCode()
    return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
  }

  /// SIGKILL, then reaps the child.
  package func kill() {
    _ = Glibc.kill(pid, SIGKILL)
    wait()
  }
}

private let smtpSinkScript = #"""
  import asyncio, base64, email, json, socket, ssl, sys, uuid
  from email.header import decode_header, make_header
  from aiosmtpd.controller import Controller
  from aiosmtpd.smtp import AuthResult

  journal, port_file, user, password, tls_folder, auth_mode, utf8 = sys.argv[1:8]

  class Handler:
      async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
          local = address.split("@")[0]
          if local.startswith("bounce"):
              return "550 5.1.1 mailbox unavailable"
          if local.startswith("later"):
              return "451 4.3.0 try again later"
          envelope.rcpt_tos.append(address)
          return "250 OK"

      async def handle_DATA(self, server, session, envelope):
          message = email.message_from_bytes(envelope.original_content)
          parts = {}
          for part in message.walk():
              if not part.is_multipart():
                  parts.setdefault(part.get_content_type(), (part.get_payload(decode=True) or b"").decode("utf-8"))
          record = {
              "from": envelope.mail_from, "to": envelope.rcpt_tos,
              "key": message.get("X-Herald-Idempotency-Key", ""),
              "subject": str(make_header(decode_header(message.get("Subject", "")))),
              "body": parts.get("text/html", parts.get("text/plain", "")),
              "text": parts.get("text/plain", ""),
              "content_type": message.get_content_type(),
              "raw": base64.b64encode(envelope.original_content).decode(),
              "tls": session.ssl is not None, "auth": bool(session.authenticated),
              "mail_options": envelope.mail_options,
          }
          with open(journal, "a") as f:
              f.write(json.dumps(record) + "\n")
          return "250 2.0.0 Ok: queued as " + uuid.uuid4().hex[:12].upper()

  def authenticate(server, session, envelope, mechanism, auth_data):
      ok = auth_data.login.decode() == user and auth_data.password.decode() == password
      return AuthResult(success=ok)

  probe = socket.socket()
  probe.bind(("127.0.0.1", 0))
  port = probe.getsockname()[1]
  probe.close()
  options = dict(hostname="127.0.0.1", port=port, ready_timeout=10, enable_SMTPUTF8=(utf8 == "smtputf8"))
  if tls_folder:
      context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
      context.load_cert_chain(tls_folder + "/cert.pem", tls_folder + "/key.pem")
      options.update(tls_context=context, require_starttls=False)
  if user:
      options.update(authenticator=authenticate, auth_required=True, auth_require_tls=False)
      if auth_mode == "login-only":
          options.update(auth_exclude_mechanism=["PLAIN"])
  connections = journal + ".connections"

  class CountingController(Controller):
      def factory(self):
          with open(connections, "a") as f:
              f.write("1\n")
          return super().factory()

  controller = CountingController(Handler(), **options)
  controller.start()
  open(connections, "w").close()  # forget the controller's own readiness probe
  with open(port_file + ".tmp", "w") as f:
      f.write(str(port))
  import os, time
  os.rename(port_file + ".tmp", port_file)
  while True:
      time.sleep(3600)
  """#

/// 127.0.0.1:`port` as a socket address.
func loopback(port: Int) -> sockaddr_in {
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  address.sin_port = UInt16(port).bigEndian
  return address
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
package func freePort() throws -> Int {
  let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard socket >= 0 else { throw TestSetupError("socket(): \(String(cString: strerror(errno)))") }
  defer { close(socket) }
  var address = loopback(port: 0)
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard bound == 0 else { throw TestSetupError("bind(): \(String(cString: strerror(errno)))") }
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  _ = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
  }
  return Int(UInt16(bigEndian: address.sin_port))
}
