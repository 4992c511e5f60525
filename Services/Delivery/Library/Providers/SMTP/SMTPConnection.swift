import Foundation
import HeraldCore
import NIOCore
import NIOPosix
import NIOSSL

/// One open SMTP session: greeted, EHLO'd, upgraded with STARTTLS when offered, authenticated.
/// Sends messages one after another on the same connection (RSET between a failed one and the next).
final class SMTPConnection: Sendable {
  struct Capabilities: Sendable {
    var pipelining = false
    var startTLS = false
    var eightBitMIME = false
    var smtpUTF8 = false
    var authMechanisms: Set<String> = []

    init(ehlo reply: SMTPReply) {
      for line in reply.lines.dropFirst() {
        let words = line.uppercased().split(separator: " ").map(String.init)
        switch words.first {
        case "PIPELINING": pipelining = true
        case "STARTTLS": startTLS = true
        case "8BITMIME": eightBitMIME = true
        case "SMTPUTF8": smtpUTF8 = true
        case "AUTH": authMechanisms.formUnion(words.dropFirst())
        default: break
        }
      }
    }
  }

  let channel: any Channel
  let settings: SMTPSettings
  let capabilities: Capabilities

  private init(channel: any Channel, settings: SMTPSettings, capabilities: Capabilities) {
    self.channel = channel
    self.settings = settings
    self.capabilities = capabilities
  }

  var isOpen: Bool { channel.isActive }

  /// Connects and runs the session's opening: greeting, EHLO, STARTTLS, EHLO again, AUTH.
  static func open(_ settings: SMTPSettings) async throws(SendFailure) -> SMTPConnection {
    let channel: any Channel
    do {
      channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(settings.timeout)
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
            try channel.pipeline.syncOperations.addHandler(SMTPClientHandler())
          }
        }
        .connect(host: settings.host, port: settings.port).get()
    } catch {
      throw .temporary("cannot connect to \(settings.host):\(settings.port): \(error)")
    }
    do {
      let greeting = try await exchange(channel, nil, settings.timeout)
      guard greeting.code == 220 else { throw Self.failure(greeting, during: "the greeting") }
      var ehlo = try await exchange(channel, "EHLO \(settings.heloName)", settings.timeout)
      guard ehlo.code == 250 else { throw Self.failure(ehlo, during: "EHLO") }
      var capabilities = Capabilities(ehlo: ehlo)
      if capabilities.startTLS && settings.tls != .none {
        let reply = try await exchange(channel, "STARTTLS", settings.timeout)
        guard reply.code == 220 else { throw Self.failure(reply, during: "STARTTLS") }
        try await startTLS(channel, settings)
        ehlo = try await exchange(channel, "EHLO \(settings.heloName)", settings.timeout)
        guard ehlo.code == 250 else { throw Self.failure(ehlo, during: "EHLO after STARTTLS") }
        capabilities = Capabilities(ehlo: ehlo)
      } else if settings.tls == .required {
        throw SendFailure.temporary("\(settings.host) does not offer STARTTLS and the provider requires it")
      }
      if let username = settings.username {
        try await authenticate(channel, settings, capabilities, username: username, password: settings.password ?? "")
      }
      return SMTPConnection(channel: channel, settings: settings, capabilities: capabilities)
    } catch {
      channel.close(promise: nil)
      throw Self.asFailure(error, during: "opening the session")
    }
  }

  private static func startTLS(_ channel: any Channel, _ settings: SMTPSettings) async throws {
    var configuration = TLSConfiguration.makeClientConfiguration()
    if let pem = settings.trustedCAPEM {
      configuration.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))]
    }
    let context = try NIOSSLContext(configuration: configuration)
    let host = settings.host
    try await channel.eventLoop.submit {
      let serverName = host.first?.isLetter == true ? host : nil
      try channel.pipeline.syncOperations.addHandler(
        NIOSSLClientHandler(context: context, serverHostname: serverName), position: .first)
    }.get()
  }

  private static func authenticate(
    _ channel: any Channel, _ settings: SMTPSettings, _ capabilities: Capabilities, username: String, password: String
  ) async throws {
    if capabilities.authMechanisms.contains("PLAIN") {
      let token = Data("\u{0}\(username)\u{0}\(password)".utf8).base64EncodedString()
      let reply = try await exchange(channel, "AUTH PLAIN \(token)", settings.timeout)
      guard reply.code == 235 else { throw authFailure(reply) }
    } else if capabilities.authMechanisms.contains("LOGIN") {
      var reply = try await exchange(channel, "AUTH LOGIN", settings.timeout)
      guard reply.code == 334 else { throw authFailure(reply) }
      reply = try await exchange(channel, Data(username.utf8).base64EncodedString(), settings.timeout)
      guard reply.code == 334 else { throw authFailure(reply) }
      reply = try await exchange(channel, Data(password.utf8).base64EncodedString(), settings.timeout)
      guard reply.code == 235 else { throw authFailure(reply) }
    } else {
      throw SendFailure.temporary(
        "\(settings.host) offers no AUTH mechanism Herald speaks (PLAIN, LOGIN); it offers "
          + (capabilities.authMechanisms.isEmpty ? "none" : capabilities.authMechanisms.sorted().joined(separator: ", ")))
    }
  }

  private static func authFailure(_ reply: SMTPReply) -> SendFailure {
    // A refused login is the provider's configuration, not the message's: temporary, so the
    // breaker sees it and traffic fails over.
    .temporary("authentication refused: \(reply)")
  }

  /// Sends one message: MAIL FROM, RCPT TO and DATA (pipelined when the server offers it), then
  /// `content` (the rendered message, ended for DATA). Returns the server's reply to the content
  /// (its queue id is in the text). A recipient whose address is not ASCII before the @ goes with
  /// SMTPUTF8 (RFC 6531), and fails for good when the server does not offer it.
  func send(_ message: OutgoingMessage, to recipient: MailAddress, content: ByteBuffer) async throws(SendFailure) -> SMTPReply {
    if recipient.needsSMTPUTF8, !capabilities.smtpUTF8 {
      throw .permanent(
        "the recipient's address is not ASCII before the @, which needs SMTPUTF8 (RFC 6531), and \(settings.host) does not offer it")
    }
    let timeout = settings.timeout
    var dataSent = false
    do {
      let envelope = [
        "MAIL FROM:<\(settings.fromAddress)>" + (capabilities.eightBitMIME ? " BODY=8BITMIME" : "")
          + (recipient.needsSMTPUTF8 ? " SMTPUTF8" : ""),
        "RCPT TO:<\(recipient.wire)>",
        "DATA",
      ]
      let replies: [SMTPReply]
      if capabilities.pipelining {
        replies = try await Self.pipeline(channel, envelope, timeout)
      } else {
        var sequential: [SMTPReply] = []
        for command in envelope {
          let reply = try await Self.exchange(channel, command, timeout)
          sequential.append(reply)
          if !reply.isPositive { break }
        }
        replies = sequential
      }
      if let failed = replies.firstIndex(where: { !$0.isPositive }) {
        let reply = replies[failed]
        // After a refused MAIL or RCPT, a pipelined DATA may have been accepted: end it empty.
        if replies.count == 3, replies[2].code == 354 {
          _ = try? await Self.exchange(channel, ".", timeout)
        }
        _ = try? await Self.exchange(channel, "RSET", timeout)
        switch failed {
        case 1 where !reply.isTransient: throw SendFailure.recipientRejected("recipient refused: \(reply)")
        default: throw Self.failure(reply, during: ["MAIL FROM", "RCPT TO", "DATA"][failed])
        }
      }
      dataSent = true
      let reply = try await Self.exchangeRaw(channel, content, timeout)
      guard reply.code == 250 else {
        _ = try? await Self.exchange(channel, "RSET", timeout)
        throw Self.failure(reply, during: "the message content")
      }
      return reply
    } catch let failure as SendFailure {
      throw failure
    } catch {
      channel.close(promise: nil)
      if dataSent {
        throw .ambiguous("the connection to \(settings.host) was lost after the message was sent, before its reply: \(error)")
      }
      throw Self.asFailure(error, during: "sending")
    }
  }

  func close() async {
    if channel.isActive {
      _ = try? await Self.exchange(channel, "QUIT", .seconds(2))
    }
    try? await channel.close()
  }

  // MARK: - Exchanges

  static func exchange(_ channel: any Channel, _ command: String?, _ timeout: TimeAmount) async throws -> SMTPReply {
    try await exchangeRaw(channel, command.map { ByteBuffer(string: $0 + "\r\n") }, timeout)
  }

  static func exchangeRaw(_ channel: any Channel, _ bytes: ByteBuffer?, _ timeout: TimeAmount) async throws -> SMTPReply {
    let promise = channel.eventLoop.makePromise(of: SMTPReply.self)
    // On timeout the connection is closed, which fails the promise (it is never completed twice).
    let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    defer { timer.cancel() }
    channel.writeAndFlush(SMTPRequest(bytes: bytes, reply: promise), promise: nil)
    return try await promise.futureResult.get()
  }

  static func pipeline(_ channel: any Channel, _ commands: [String], _ timeout: TimeAmount) async throws -> [SMTPReply] {
    let promises = commands.map { _ in channel.eventLoop.makePromise(of: SMTPReply.self) }
    let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    defer { timer.cancel() }
    for (command, promise) in zip(commands, promises) {
      channel.write(SMTPRequest(bytes: ByteBuffer(string: command + "\r\n"), reply: promise), promise: nil)
    }
    channel.flush()
    var replies: [SMTPReply] = []
    for promise in promises {
      replies.append(try await promise.futureResult.get())
    }
    return replies
  }

  static func failure(_ reply: SMTPReply, during step: String) -> SendFailure {
    let text = "\(step) refused: \(reply)"
    return reply.isTransient ? .temporary(text) : .permanent(text)
  }

  static func asFailure(_ error: any Error, during step: String) -> SendFailure {
    if let failure = error as? SendFailure { return failure }
    return .temporary("SMTP \(step) failed: \(error)")
  }
}
