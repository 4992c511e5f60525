import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HeraldCampaign
import HeraldCore
import HeraldDelivery
import HeraldPostgres
import HeraldProtos
import HeraldServerKit
import HeraldTestSupport
import Logging
import NIOCore
import PostgresNIO
import SwiftProtobuf
import Testing

/// E-mail as inboxes expect it (SPEC §10): MIME parts and headers checked by Python's `email`
/// parser, DKIM signatures (rsa-sha256 and ed25519-sha256, relaxed/relaxed) verified by dkimpy,
/// an implementation independent of Herald's, with its DNS lookup answered from the records the
/// API publishes.
@Suite(.timeLimit(.minutes(5))) struct MailTests {
  typealias Delivery = Herald_Delivery_V1_DeliveryService.Client<HTTP2ClientTransport.Posix>

  /// What the checker script found in a message.
  struct Checked: Decodable {
    struct Signature: Decodable {
      var a: String
      var s: String
      var h: String
      var ok: Bool
    }
    struct Part: Decodable {
      var type: String
      var cte: String
      var content: String
      var defects: [String]
    }
    var signatures: [Signature]
    var contentType: String
    var subject: String
    var fromName: String
    var fromAddress: String
    var replyTo: String
    var messageID: String
    var date: String
    var defects: [String]
    var parts: [Part]
    var longLines: [String]
    var tamperedVerifies: [Bool]
    var listUnsubscribe: String
    var listUnsubscribePost: String

    enum CodingKeys: String, CodingKey {
      case signatures, subject, date, defects, parts
      case contentType = "content_type"
      case fromName = "from_name"
      case fromAddress = "from_address"
      case replyTo = "reply_to"
      case messageID = "message_id"
      case longLines = "long_lines"
      case tamperedVerifies = "tampered_verifies"
      case listUnsubscribe = "list_unsubscribe"
      case listUnsubscribePost = "list_unsubscribe_post"
    }
  }

  /// Parses `raw` with Python's e-mail parser and verifies each DKIM signature with dkimpy, its
  /// DNS answered from `records` (name → TXT value); also verifies a copy with one body byte
  /// changed, which must fail.
  static func check(_ raw: Data, records: [String: String]) async throws -> Checked {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-mail-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try raw.write(to: URL(fileURLWithPath: folder + "/message.eml"))
    try JSONSerialization.data(withJSONObject: records).write(to: URL(fileURLWithPath: folder + "/records.json"))
    try checker.write(toFile: folder + "/check.py", atomically: true, encoding: .utf8)
    let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
    let (status, output) = try await SpawnedProcess.run(
      python, [folder + "/check.py", folder + "/message.eml", folder + "/records.json"])
    guard status == 0, let line = output.split(separator: "\n").last else {
      throw TestSetupError("the mail checker failed (run scripts/test, which installs dkimpy): \(output)")
    }
    return try JSONDecoder().decode(Checked.self, from: Data(line.utf8))
  }

  static let checker = #"""
    import email, email.policy, json, sys
    import dkim, dkim.util
    raw = open(sys.argv[1], "rb").read()
    records = json.load(open(sys.argv[2]))
    def dns(name, timeout=5):
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value else None
    def verify_all(data):
        checker = dkim.DKIM(data)
        found = [value for name, value in checker.headers if name.lower() == b"dkim-signature"]
        out = []
        for index, value in enumerate(found):
            tags = dkim.util.parse_tag_value(value)
            try:
                ok = checker.verify(idx=index, dnsfunc=dns)
            except dkim.ValidationError as error:
                ok = False
            out.append({"a": tags[b"a"].decode(), "s": tags[b"s"].decode(), "h": tags[b"h"].decode(), "ok": bool(ok)})
        return out
    signatures = verify_all(raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    flipped = bytearray(body)
    for i, byte in enumerate(flipped):
        if chr(byte).isalpha():
            flipped[i] = ord("X") if byte != ord("X") else ord("Y")
            break
    tampered = [s["ok"] for s in verify_all(head + b"\r\n\r\n" + bytes(flipped))]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    sender = message["from"].addresses[0]
    parts = []
    for part in message.walk():
        if not part.is_multipart():
            parts.append({"type": part.get_content_type(), "cte": str(part["content-transfer-encoding"]),
                          "content": part.get_content(), "defects": [str(d) for d in part.defects]})
    print(json.dumps({
        "signatures": signatures, "tampered_verifies": tampered, "content_type": message.get_content_type(),
        "subject": str(message["subject"]), "from_name": sender.display_name, "from_address": sender.addr_spec,
        "reply_to": str(message["reply-to"] or ""), "message_id": str(message["message-id"]), "date": str(message["date"]),
        "defects": [str(d) for d in message.defects], "parts": parts,
        "list_unsubscribe": str(message["list-unsubscribe"] or ""),
        "list_unsubscribe_post": str(message["list-unsubscribe-post"] or ""),
        # RFC 5322's 78, and RFC 2047's 76 for a line holding encoded words.
        "long_lines": [line.decode() for line in raw.split(b"\r\n") if len(line) > (76 if b"=?" in line else 78)],
    }))
    """#

  static func message(format: String, subject: String, body: String, textBody: String? = nil) -> OutgoingMessage {
    OutgoingMessage(
      id: UUID(), idempotencyKey: "mail-test", channel: "email", recipient: "ada@example.com", subject: subject, body: body,
      format: format, textBody: textBody, campaignID: UUID())
  }

  static func bytes(_ buffer: ByteBuffer) -> Data {
    // Without DATA's terminating ".\r\n".
    Data(buffer.readableBytesView.dropLast(3))
  }

  @Test func anHTMLMessageIsMultipartWithBothSignaturesVerifiedIndependently() async throws {
    let (rsa, _) = try DKIMKey.generate(domain: "herald.test", selector: "herald-rsa", algorithm: .rsaSHA256)
    let (ed, _) = try DKIMKey.generate(domain: "herald.test", selector: "herald-ed", algorithm: .ed25519SHA256)
    let records = Dictionary(
      uniqueKeysWithValues: [rsa, ed].map { ($0.dnsName, DKIMKey.dnsRecord(algorithm: $0.algorithm, publicKey: $0.publicKey)) })
    let subject = "Grüße aus Köln: unsere Neuigkeiten für den Dezember, mit allem, was Sie wissen müssen — und mehr"
    let html = """
      <html><head><style>p { color: red }</style><title>News</title></head><body>
      <h1>Hello Ada</h1><p>Our news &amp; more.   Read <a href="https://example.com/a?b=1&amp;c=2">the article</a>.</p>
      <p>.A line that starts with a dot, and a long one: \(String(repeating: "lorem ipsum ", count: 20))</p>
      <ul><li>one</li><li>two</li></ul><p>Trailing space here </p>
      </body></html>
      """
    let message = Self.message(format: "html", subject: subject, body: html)
    let sender = MIMEMessage.Sender(address: "news@herald.test", name: "Herald News — Köln", replyTo: "help@herald.test")
    let date = Date(timeIntervalSince1970: 1_796_000_000)
    let raw = Self.bytes(try MIMEMessage.render(message, sender: sender, keys: [rsa, ed], date: date))
    let checked = try await Self.check(raw, records: records)

    #expect(checked.signatures.map(\.a) == ["rsa-sha256", "ed25519-sha256"])
    #expect(checked.signatures.allSatisfy { $0.ok }, "\(checked.signatures)")
    #expect(checked.tamperedVerifies == [false, false])
    let signed = checked.signatures.first?.h.filter { !$0.isWhitespace }.split(separator: ":").map(String.init) ?? []
    let present = ["from", "reply-to", "to", "subject", "date", "message-id", "mime-version", "content-type"]
    #expect(signed == present + present)
    #expect(checked.defects.isEmpty && checked.parts.allSatisfy { $0.defects.isEmpty })
    #expect(checked.contentType == "multipart/alternative")
    #expect(checked.parts.map(\.type) == ["text/plain", "text/html"])
    #expect(checked.parts.map(\.cte) == ["quoted-printable", "quoted-printable"])
    #expect(checked.parts.last?.content.replacingOccurrences(of: "\r\n", with: "\n") == html)
    let text = checked.parts.first?.content.replacingOccurrences(of: "\r\n", with: "\n") ?? ""
    #expect(text.hasPrefix("Hello Ada\n\nOur news & more. Read the article (https://example.com/a?b=1&c=2)."), "\(text)")
    #expect(text.contains("\n- one\n- two"), "\(text)")
    #expect(!text.contains("color") && !text.contains("News\n"), "\(text)")
    #expect(checked.subject == subject)
    #expect(checked.fromName == "Herald News — Köln" && checked.fromAddress == "news@herald.test")
    #expect(checked.replyTo == "help@herald.test")
    #expect(checked.messageID == "<\(message.id.lowercasedString)@herald.test>")
    #expect(checked.date == "Mon, 30 Nov 2026 00:53:20 +0000")  // date -u -d @1796000000
    // Folded headers and soft-broken quoted-printable: no line over 78 characters.
    #expect(checked.longLines.isEmpty, "\(checked.longLines)")
  }

  /// `x=` (RFC 6376 §3.5) when a lifetime is set: dkimpy takes the signature within it and
  /// refuses it after (it allows ten hours for clocks that are off, so the old one is two days old).
  @Test func aSignatureWithALifetimeVerifiesWithinItAndNotAfter() async throws {
    let (rsa, _) = try DKIMKey.generate(domain: "herald.test", selector: "herald-rsa", algorithm: .rsaSHA256)
    let records = [rsa.dnsName: DKIMKey.dnsRecord(algorithm: rsa.algorithm, publicKey: rsa.publicKey)]
    let sender = MIMEMessage.Sender(address: "news@herald.test", name: "", replyTo: nil)
    let message = Self.message(format: "text", subject: "News", body: "Hello")
    for (age, valid) in [(0.0, true), (172_800.0, false)] {
      let date = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - age).rounded(.down))
      let raw = Self.bytes(try MIMEMessage.render(message, sender: sender, keys: [rsa], signatureLifetime: .seconds(3600), date: date))
      let expiry = Int(date.timeIntervalSince1970) + 3600
      #expect(String(decoding: raw, as: UTF8.self).contains(" x=\(expiry);"))
      let checked = try await Self.check(raw, records: records)
      #expect(checked.signatures.map(\.ok) == [valid], "signed \(Int(age)) s ago")
    }
  }

  @Test func aTextMessageIsOnePartAndItsTextIsNeverGuessedToBeHTML() async throws {
    let (ed, _) = try DKIMKey.generate(domain: "herald.test", selector: "s1", algorithm: .ed25519SHA256)
    let body = "<p>Hello</p> is text here.\nZeile zwei: Grüße\n\n\n"
    let raw = Self.bytes(
      try MIMEMessage.render(
        Self.message(format: "text", subject: "Plain", body: body), sender: .init(address: "news@herald.test"), keys: [ed]))
    let checked = try await Self.check(raw, records: [ed.dnsName: DKIMKey.dnsRecord(algorithm: ed.algorithm, publicKey: ed.publicKey)])
    #expect(checked.signatures.map(\.ok) == [true])
    #expect(checked.contentType == "text/plain")
    #expect(checked.parts.map(\.type) == ["text/plain"])
    #expect(checked.parts.first?.content.replacingOccurrences(of: "\r\n", with: "\n") == body + "\n")
    #expect(checked.fromName == "" && checked.replyTo == "")
    // Mostly not ASCII: base64.
    let greek = Self.bytes(
      try MIMEMessage.render(
        Self.message(format: "text", subject: "Γειά", body: "Καλημέρα κόσμε, τι κάνεις;"),
        sender: .init(address: "news@herald.test")))
    let parsed = try await Self.check(greek, records: [:])
    #expect(parsed.parts.first?.cte == "base64" && parsed.parts.first?.content == "Καλημέρα κόσμε, τι κάνεις;")
    #expect(parsed.subject == "Γειά" && parsed.signatures.isEmpty)
  }

  @Test func quotedPrintableAndTheHTMLTextMatchTheirRules() {
    // 76-character lines at most, "=" escaped, trailing space encoded, a leading dot encoded.
    let encoded = MIMEEncoding.quotedPrintable(".start = x \n" + String(repeating: "a", count: 200) + "\r\nü")
    let lines = encoded.components(separatedBy: "\r\n")
    #expect(lines.first == "=2Estart =3D x=20")
    #expect(lines.allSatisfy { $0.count <= 76 })
    #expect(lines.last == "=C3=BC")
    #expect(
      HTMLText.text(fromHTML: "<p>a<br>b</p><!-- hidden --><script>x()</script>c &#x2019; &#8212; &bogus;") == "a\nb\n\nc ’ — &bogus;")
    #expect(HTMLText.text(fromHTML: "<a href='https://x.test/?q=1'>go</a> <a name=top>top</a>") == "go (https://x.test/?q=1) top")
    // A "<" inside a script does not hide the text after it.
    #expect(HTMLText.text(fromHTML: "<script>if (a<b) { x() }</script><STYLE>p{}</STYLE>kept") == "kept")
    // A dot that a soft break puts at the start of a line is encoded too.
    let dotted = MIMEEncoding.quotedPrintable(String(repeating: "a", count: 75) + ".b").components(separatedBy: "\r\n")
    #expect(dotted == [String(repeating: "a", count: 75) + "=", "=2Eb"])
  }

  /// The delivery service with a secrets key, its workers sending to a real SMTP server; `body`
  /// also gets its port and the database's URL.
  func withDelivery(
    secrets: SecretBox, _ body: (Delivery, PostgresClient, SMTPSink) async throws -> Void
  ) async throws {
    try await withDelivery(secrets: secrets) { delivery, database, sink, _, _ in try await body(delivery, database, sink) }
  }

  func withDelivery(
    secrets: SecretBox, smtpUTF8: Bool = false,
    _ body: (Delivery, PostgresClient, SMTPSink, _ port: Int, _ url: String) async throws -> Void
  ) async throws {
    var settings = DeliveryWorkerTests.settings()
    settings.secrets = secrets
    try await withSMTPSink(smtpUTF8: smtpUTF8) { sink in
      let url = try await TestPostgres.shared.makeDatabase()
      var definition = DeliveryDefinition.make(settings: settings)
      definition.readinessDependencies = []
      try await withRunningService(definition, databaseURL: url) { port, _ async throws in
        try await withClient(port: port) { client async throws in
          try await withDatabase(url) { database async throws in
            try await body(Delivery(wrapping: client), database, sink, port, url)
          }
        }
      }
    }
  }

  static func keyRequest(
    _ domain: String, _ selector: String, _ algorithm: Herald_Delivery_V1_DkimAlgorithm
  ) -> Herald_Delivery_V1_CreateDkimKeyRequest {
    .with {
      $0.domain = domain
      $0.selector = selector
      $0.algorithm = algorithm
    }
  }

  static let secrets = try! SecretBox("k1:" + Data(repeating: 7, count: 32).base64EncodedString())

  /// International domains become the A-labels that Python's `idna` (IDNA 2008 with UTS #46, an
  /// independent implementation) makes of them; the ones it refuses are refused.
  @Test func internationalDomainsBecomeTheALabelsPythonsIdnaMakes() async throws {
    let domains = [
      "bücher.example", "münchen.de", "MÜNCHEN.DE", "例え.テスト", "faß.de", "παράδειγμα.δοκιμή", "пример.рф", "straße.köln",
      "日本語。jp", "xn--bcher-kva.example", "ü-x.de", "-ü.de", "ü..de", String(repeating: "ü", count: 60) + ".de", "a b.ü",
    ]
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-idna-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try JSONSerialization.data(withJSONObject: domains).write(to: URL(fileURLWithPath: folder + "/domains.json"))
    try """
    import idna, json, sys
    out = []
    for domain in json.load(open(sys.argv[1])):
        try:
            out.append(idna.encode(domain, uts46=True).decode())
        except idna.IDNAError:
            out.append(None)
    print(json.dumps(out))
    """.write(toFile: folder + "/encode.py", atomically: true, encoding: .utf8)
    let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
    let (status, output) = try await SpawnedProcess.run(python, [folder + "/encode.py", folder + "/domains.json"])
    guard status == 0, let line = output.split(separator: "\n").last,
      let expected = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [Any]
    else { throw TestSetupError("the IDNA check failed (run scripts/test, which installs idna): \(output)") }
    for (domain, answer) in zip(domains, expected) {
      let ours = try? IDNA.asciiDomain(domain)
      #expect(ours == answer as? String, "\(domain)")
    }
    // Punycode's own examples (RFC 3492 §7.1: Arabic, Chinese).
    #expect(Punycode.encode("ليهمابتكلموشعربي؟".unicodeScalars.map(\.value)) == "egbpdaj6bu4bxfgehfvwxn")
    #expect(Punycode.encode("他们为什么不说中文".unicodeScalars.map(\.value)) == "ihqwcrb4cv8a8dqg056pqjye")
  }

  /// A recipient on an international domain is sent to its A-labels; one whose address is not
  /// ASCII before the @ goes with SMTPUTF8 and its To header in UTF-8 (RFC 6531/6532), and fails
  /// for good, saying why, at a server that does not offer SMTPUTF8.
  @Test func internationalAddressesGoInPunycodeAndWithSMTPUTF8WhereTheServerOffersIt() async throws {
    for offered in [true, false] {
      try await withDelivery(secrets: Self.secrets, smtpUTF8: offered) { delivery, _, sink, _, _ in
        var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
        provider.smtp.fromAddress = "news@Bücher.example"
        _ = try await delivery.putProvider(provider)
        for (key, recipient) in [("idn", "ada@bücher.example"), ("utf8", "jörg@münchen.example")] {
          _ = try await delivery.sendMessage(DeliveryWorkerTests.email(key, to: recipient))
        }
        try await eventually("the message on an international domain at the SMTP server") { sink.messages.contains { $0.key == "idn" } }
        let idn = try #require(sink.messages.first { $0.key == "idn" })
        #expect(idn.to == ["ada@xn--bcher-kva.example"] && idn.from == "news@xn--bcher-kva.example")
        #expect(!idn.mailOptions.contains("SMTPUTF8"))
        #expect(String(decoding: idn.raw, as: UTF8.self).contains("\r\nTo: <ada@xn--bcher-kva.example>\r\n"))
        if offered {
          try await eventually("the SMTPUTF8 message at the SMTP server") { sink.messages.contains { $0.key == "utf8" } }
          let utf8 = try #require(sink.messages.first { $0.key == "utf8" })
          #expect(utf8.to == ["jörg@xn--mnchen-3ya.example"] && utf8.mailOptions.contains("SMTPUTF8"))
          #expect(String(decoding: utf8.raw, as: UTF8.self).contains("\r\nTo: <jörg@xn--mnchen-3ya.example>\r\n"))
        } else {
          try await eventually("the SMTPUTF8 message to fail") {
            try await delivery.listMessages(.with { $0.status = "failed" }).messages.contains { $0.idempotencyKey == "utf8" }
          }
          let failed = try await delivery.listMessages(.with { $0.status = "failed" }).messages.first { $0.idempotencyKey == "utf8" }
          #expect(failed?.lastError.contains("SMTPUTF8") == true)
          #expect(!sink.messages.contains { $0.key == "utf8" })
        }
      }
    }
    // A From address that is not ASCII before the @ is refused where it is given, naming the field.
    try await withDelivery(secrets: Self.secrets) { delivery, _, sink, _, _ in
      var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
      provider.smtp.fromAddress = "nachrichten-ü@example.com"
      let error = await #expect(throws: RPCError.self) { _ = try await delivery.putProvider(provider) }
      #expect(error?.code == .invalidArgument && error?.message.contains("smtp.from_address") == true)
    }
  }

  @Test func keysMadeThroughTheAPISignMailThatCrossesARealSMTPServer() async throws {
    try await withDelivery(secrets: Self.secrets) { delivery, database, sink in
      for algorithm in [Herald_Delivery_V1_DkimAlgorithm.rsaSha256, .ed25519Sha256] {
        let key = try await delivery.createDkimKey(
          .with {
            $0.domain = "Herald.TEST"
            $0.selector = algorithm == .rsaSha256 ? "herald-rsa" : "herald-ed"
            $0.algorithm = algorithm
          })
        #expect(key.domain == "herald.test" && key.dnsName == "\(key.selector)._domainkey.herald.test")
        #expect(key.dnsRecord.hasPrefix(algorithm == .rsaSha256 ? "v=DKIM1; k=rsa; p=MIIBIjAN" : "v=DKIM1; k=ed25519; p="))
      }
      // Bad input names the field; a selector is not taken twice.
      func refused(_ request: Herald_Delivery_V1_CreateDkimKeyRequest, _ code: RPCError.Code, _ text: String) async {
        do {
          _ = try await delivery.createDkimKey(request)
          Issue.record("\(request) was accepted")
        } catch let error as RPCError {
          #expect(error.code == code && error.message.contains(text), "\(error)")
        } catch { Issue.record("\(error)") }
      }
      await refused(
        Self.keyRequest("herald.test", "bad_selector!", .rsaSha256), .invalidArgument, "selector 'bad_selector!' must be DNS labels")
      await refused(
        Self.keyRequest("not a domain", "s", .rsaSha256), .invalidArgument, "domain 'not a domain' must be a domain name")
      await refused(
        Self.keyRequest("herald.test", "s", .unspecified), .invalidArgument, "algorithm must be")
      await refused(
        Self.keyRequest("herald.test", "herald-rsa", .ed25519Sha256), .alreadyExists, "already has a key under selector 'herald-rsa'")

      // Stored sealed: neither the private key's DER nor its seed appear in clear.
      let sealed = try await database.query("SELECT private_key FROM delivery.dkim_keys ORDER BY selector", logger: Logger(label: "test"))
        .decode(String.self).elements()
      #expect(sealed.count == 2 && sealed.allSatisfy { $0.hasPrefix("sealed:v1:k1:") })
      let opened = try sealed.map { try Self.secrets.open($0) }
      #expect(opened.map(\.count).sorted().first == 32)

      let keys = try await delivery.listDkimKeys(.with { $0.domain = "herald.test" }).keys
      #expect(keys.map(\.selector) == ["herald-ed", "herald-rsa"])
      let records = Dictionary(uniqueKeysWithValues: keys.map { ($0.dnsName, $0.dnsRecord) })

      var provider = DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink)
      provider.smtp.fromName = "Herald News"
      provider.smtp.replyTo = "help@herald.test"
      // Reply-To and List-Unsubscribe's mailto: then carry signed addresses: signed like the rest.
      provider.smtp.inboundDomain = "reply.herald.test"
      _ = try await delivery.putProvider(provider)
      _ = try await delivery.sendMessage(
        .with {
          $0.idempotencyKey = "signed-1"
          $0.channel = .email
          $0.recipient = "ada@example.com"
          $0.subject = "Welcome, Ada"
          $0.body = "<p>Hello <b>Ada</b>, <a href=\"https://herald.test/start\">start here</a>.</p>"
          $0.format = "html"
          $0.textBody = "Hello Ada, start here: https://herald.test/start"
          $0.listUnsubscribeURL = "https://herald.test/u/v1.k1.token.mac"
        })
      try await eventually("the message at the SMTP server") { sink.messages.contains { $0.key == "signed-1" } }
      let received = try #require(sink.messages.first { $0.key == "signed-1" })
      let checked = try await Self.check(received.raw, records: records)
      #expect(Set(checked.signatures.map(\.a)) == ["rsa-sha256", "ed25519-sha256"])
      #expect(checked.signatures.allSatisfy { $0.ok }, "\(checked.signatures)")
      #expect(checked.contentType == "multipart/alternative" && checked.fromName == "Herald News")
      let headers = String(decoding: received.raw, as: UTF8.self).replacingOccurrences(of: "\r\n ", with: " ")
      #expect(headers.contains(/Reply-To: <reply\+[a-z2-7]{44}@reply\.herald\.test>/) && headers.contains(", <mailto:unsubscribe+"))
      #expect(received.text.replacingOccurrences(of: "\r\n", with: "\n") == "Hello Ada, start here: https://herald.test/start")

      // A deleted key signs no more (this replica reloads at once); unknown keys are NOT_FOUND.
      _ = try await delivery.deleteDkimKey(
        .with {
          $0.domain = "herald.test"
          $0.selector = "herald-rsa"
        })
      do {
        _ = try await delivery.deleteDkimKey(
          .with {
            $0.domain = "herald.test"
            $0.selector = "herald-rsa"
          })
        Issue.record("a deleted key was deleted again")
      } catch let error as RPCError {
        #expect(error.code == .notFound)
      }
      _ = try await delivery.sendMessage(
        .with {
          $0.idempotencyKey = "signed-2"
          $0.channel = .email
          $0.recipient = "ada@example.com"
          $0.subject = "Second"
          $0.body = "Plain text"
        })
      try await eventually("the second message at the SMTP server") { sink.messages.contains { $0.key == "signed-2" } }
      let second = try await Self.check(try #require(sink.messages.first { $0.key == "signed-2" }).raw, records: records)
      #expect(second.signatures.map(\.a) == ["ed25519-sha256"] && second.signatures.allSatisfy { $0.ok })
      #expect(second.contentType == "text/plain")
    }
  }

  @Test func withoutASecretsKeyNoKeyIsMadeAndTheErrorSaysWhy() async throws {
    try await withDelivery(secrets: .none) { delivery, _, _ in
      do {
        _ = try await delivery.createDkimKey(
          .with {
            $0.domain = "herald.test"
            $0.selector = "s"
            $0.algorithm = .ed25519Sha256
          })
        Issue.record("a key was made without HERALD_SECRETS_KEY")
      } catch let error as RPCError {
        #expect(error.code == .failedPrecondition && error.message.contains("HERALD_SECRETS_KEY is not set"))
      }
      // A message whose format is not text or html is refused naming the field.
      do {
        _ = try await delivery.sendMessage(
          .with {
            $0.idempotencyKey = "bad-format"
            $0.channel = .sms
            $0.recipient = "+14155550123"
            $0.body = "hi"
            $0.format = "html"
          })
        Issue.record("an HTML SMS was accepted")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument && error.message == "format html is for e-mail only; sms is text")
      }
    }
  }

  @Test func aSecretsKeyRotatesAndATamperedValueDoesNotOpen() throws {
    let old = try SecretBox("old:" + Data(repeating: 1, count: 32).base64EncodedString())
    let sealed = try old.seal(Data("private".utf8))
    let rotated = try SecretBox(
      "new:" + Data(repeating: 2, count: 32).base64EncodedString() + ",old:" + Data(repeating: 1, count: 32).base64EncodedString())
    #expect(try rotated.open(sealed) == Data("private".utf8))
    #expect(try rotated.seal(Data("x".utf8)).hasPrefix("sealed:v1:new:"))
    #expect(throws: SecretBox.Failure.unknownKey("old")) {
      try SecretBox("new:" + Data(repeating: 2, count: 32).base64EncodedString()).open(sealed)
    }
    var bytes = Array(sealed.utf8)
    bytes[bytes.count - 6] = bytes[bytes.count - 6] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    #expect(throws: SecretBox.Failure.tampered("old")) { try rotated.open(String(decoding: bytes, as: UTF8.self)) }
    #expect(throws: ConfigurationError.self) { try SecretBox("too-short") }
  }
}

/// One-click unsubscribe (RFC 8058) on campaign e-mail: the signed link in List-Unsubscribe and
/// the template, honoured by the campaign service without a lookup to check it.
@Suite(.timeLimit(.minutes(5))) struct UnsubscribeLinkTests {
  typealias Campaign = Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>
  static let links = UnsubscribeLinks(publicURL: "https://mail.herald.test", secrets: MailTests.secrets)

  @Test func aTokenChecksOutOnlyAsSignedAndUnderAKeyStillHeld() throws {
    let token = UnsubscribeToken(subscriber: UUID(), campaign: UUID(), channel: "email")
    let url = try #require(Self.links.url(token))
    let text = String(try #require(url.split(separator: "/").last))
    #expect(url == "https://mail.herald.test/u/\(text)" && text.hasPrefix("v1.k1."))
    #expect(Self.links.verify(text) == token)
    // Any changed character, another key, or no key: not genuine.
    for index in [3, 8, text.count / 2, text.count - 2] {
      var characters = Array(text)
      characters[index] = characters[index] == "A" ? "B" : "A"
      #expect(Self.links.verify(String(characters)) == nil, "changed at \(index)")
    }
    let other = UnsubscribeLinks(publicURL: "", secrets: try SecretBox("k1:" + Data(repeating: 9, count: 32).base64EncodedString()))
    #expect(other.verify(text) == nil)
    #expect(UnsubscribeLinks.none.verify(text) == nil && UnsubscribeLinks.none.url(token) == nil)
    // After a rotation (new key first, the old kept), old links still work and new ones use the new key.
    let rotated = UnsubscribeLinks(
      publicURL: "",
      secrets: try SecretBox(
        "k2:" + Data(repeating: 3, count: 32).base64EncodedString() + ",k1:" + Data(repeating: 7, count: 32).base64EncodedString()))
    #expect(rotated.verify(text) == token)
    #expect(rotated.url(token)?.contains("/u/v1.k2.") == true)
  }

  @Test func aCampaignEmailCarriesASignedOneClickLinkThatUnsubscribesOnceAndForAll() async throws {
    try await MailTests().withDelivery(secrets: MailTests.secrets) { delivery, database, sink, deliveryPort, url in
      _ = try await delivery.createDkimKey(
        .with {
          $0.domain = "herald.test"
          $0.selector = "s1"
          $0.algorithm = .rsaSha256
        })
      let records = Dictionary(
        uniqueKeysWithValues: try await delivery.listDkimKeys(.init()).keys.map { ($0.dnsName, $0.dnsRecord) })
      _ = try await delivery.putProvider(DeliveryWorkerTests.smtpProvider("smtp-main", sink: sink))
      var settings = CampaignSettings()
      settings.publicURL = Self.links.publicURL
      settings.secrets = MailTests.secrets
      var definition = CampaignDefinition.definition(settings: settings)
      definition.readinessDependencies = []
      definition.makeWorkers = { _ in [] }
      try await withRunningService(
        definition, databaseURL: url, dependencies: ["delivery": ServiceAddress(host: "127.0.0.1", port: deliveryPort)]
      ) { campaignPort, _ async throws in
        try await withClient(port: campaignPort) { client async throws in
          try await withClient(port: deliveryPort) { deliveryClient async throws in
            let campaign = Campaign(wrapping: client)
            let relay = OutboxRelay(
              client: database, sink: DeliverySink(client: deliveryClient), links: Self.links, logger: Logger(label: "test.relay"))
            try await self.run(campaign, relay: relay, database: database, sink: sink, records: records)
          }
        }
      }
    }
  }

  /// A list "news" with one member, Ada, who consents to e-mail (from a signup form).
  static func newsListWithAda(_ campaign: Campaign) async throws -> (Herald_Campaign_V1_SubscriberList, Herald_Campaign_V1_Subscriber) {
    let list = try await campaign.createList(.with { $0.name = "news" })
    let ada = try await campaign.createSubscriber(
      .with {
        $0.email = "ada@example.com"
        $0.firstName = "Ada"
        $0.emailConsent = .with {
          $0.subscribed = true
          $0.source = "signup-form"
        }
      })
    _ = try await campaign.addListMembers(
      .with {
        $0.listID = list.id
        $0.subscriberIds = [ada.id]
      })
    return (list, ada)
  }

  func run(_ campaign: Campaign, relay: OutboxRelay, database: PostgresClient, sink: SMTPSink, records: [String: String])
    async throws
  {
    let (list, ada) = try await Self.newsListWithAda(campaign)
    let template = try await campaign.createTemplate(
      .with {
        $0.name = "news"
        $0.channel = "email"
        $0.subject = "News for {{first_name}}"
        $0.body = "<p>Hello {{first_name}}</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>"
        $0.variables = [.with { $0.name = "first_name" }, .with { $0.name = "unsubscribe_url" }]
      })
    func send(_ name: String) async throws -> String {
      let id = try await campaign.createCampaign(
        .with {
          $0.name = name
          $0.channel = "email"
          $0.listID = list.id
          $0.templateID = template.id
        }
      ).id
      _ = try await campaign.sendCampaign(.with { $0.id = id })
      try await relay.drain()
      return id
    }
    let first = try await send("first")
    try await eventually("the campaign e-mail at the SMTP server") { !sink.messages.isEmpty }
    let received = try #require(sink.messages.first)
    let checked = try await MailTests.check(received.raw, records: records)
    // Both headers, DKIM-signed with the rest; the same link in the body.
    #expect(checked.listUnsubscribePost == "List-Unsubscribe=One-Click")
    let header = checked.listUnsubscribe
    #expect(header.hasPrefix("<https://mail.herald.test/u/v1.k1.") && header.hasSuffix(">"), "\(header)")
    let link = String(header.dropFirst().dropLast())
    let token = String(try #require(link.split(separator: "/").last))
    #expect(checked.signatures.map(\.ok) == [true])
    let signed = checked.signatures.first?.h.filter { !$0.isWhitespace }.split(separator: ":") ?? []
    #expect(signed.contains("list-unsubscribe") && signed.contains("list-unsubscribe-post"))
    #expect(received.body.contains("<a href=\"\(link)\">Unsubscribe</a>"))

    // The page's view does not change anything; the one-click unsubscribe does, once.
    let before = try await campaign.describeUnsubscribeLink(.with { $0.token = token })
    #expect(before.emailSubscribed && before.channel == "email" && before.maskedEmail == "a***@example.com")
    for _ in 0..<2 {
      let after = try await campaign.unsubscribeByLink(.with { $0.token = token })
      #expect(!after.emailSubscribed)
    }
    let history = try await campaign.exportSubscriber(.with { $0.id = ada.id }).consentHistory
    #expect(history.map(\.source) == ["signup-form", "list-unsubscribe"])
    #expect(history.last?.campaignID == first && history.last?.subscribed == false)
    var tampered = Array(token)
    tampered[tampered.count - 3] = tampered[tampered.count - 3] == "x" ? "y" : "x"
    for bad in [String(tampered), "v1.k1.nonsense.x", ""] {
      do {
        _ = try await campaign.unsubscribeByLink(.with { $0.token = bad })
        Issue.record("the token '\(bad)' was accepted")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument && error.message == "this unsubscribe link is not valid")
      }
    }
    // The next campaign leaves Ada out: no outbox entry, no message.
    let second = try await send("second")
    #expect(try await campaign.getCampaign(.with { $0.id = second }).counts.outbox == 0)
    #expect(sink.messages.count == 1)
  }
}
