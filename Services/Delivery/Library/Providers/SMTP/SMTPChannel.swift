import NIOCore

/// One SMTP reply: a three-digit code and one or more text lines (RFC 5321 §4.2).
package struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
  package var code: Int
  package var lines: [String]

  package var text: String { lines.joined(separator: " ") }
  package var description: String { "\(code) \(text)" }
  package var isPositive: Bool { (200..<400).contains(code) }
  package var isTransient: Bool { (400..<500).contains(code) }
}

package struct SMTPProtocolError: Error, Sendable, CustomStringConvertible {
  package var description: String
}

/// Reads CRLF-terminated lines and groups `250-...` continuation lines with their final `250 ...`
/// line into one `SMTPReply`.
struct SMTPReplyDecoder: ByteToMessageDecoder {
  typealias InboundOut = SMTPReply
  static let maximumLine = 8192

  private var pending: (code: Int, lines: [String])?

  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
      if buffer.readableBytes > Self.maximumLine {
        throw SMTPProtocolError(description: "the server sent a reply line longer than \(Self.maximumLine) bytes")
      }
      return .needMoreData
    }
    let length = newline - buffer.readerIndex
    var line = buffer.readString(length: length) ?? ""
    buffer.moveReaderIndex(forwardBy: 1)
    if line.hasSuffix("\r") { line.removeLast() }
    let bytes = Array(line.utf8)
    guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)), (200...599).contains(code),
      bytes.count == 3 || bytes[3] == UInt8(ascii: " ") || bytes[3] == UInt8(ascii: "-")
    else {
      throw SMTPProtocolError(description: "malformed SMTP reply line '\(line.prefix(200))'")
    }
    let text = bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : ""
    if let pending, pending.code != code {
      throw SMTPProtocolError(description: "SMTP reply mixes codes \(pending.code) and \(code)")
    }
    var lines = pending?.lines ?? []
    lines.append(text)
    if bytes.count > 3 && bytes[3] == UInt8(ascii: "-") {
      pending = (code, lines)
    } else {
      pending = nil
      context.fireChannelRead(wrapInboundOut(SMTPReply(code: code, lines: lines)))
    }
    return .continue
  }

  mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
    while try decode(context: context, buffer: &buffer) == .continue {}
    return .needMoreData
  }
}

/// Bytes to write (nil: nothing, e.g. to wait for the greeting) and the promise of the reply
/// they will get.
struct SMTPRequest {
  var bytes: ByteBuffer?
  var reply: EventLoopPromise<SMTPReply>
}

/// Pairs replies with requests in order (so commands can be pipelined). A reply that arrives with
/// no request waiting — the greeting — is kept for the next request.
final class SMTPClientHandler: ChannelDuplexHandler {
  typealias InboundIn = SMTPReply
  typealias OutboundIn = SMTPRequest
  typealias OutboundOut = ByteBuffer

  private var waiting = CircularBuffer<EventLoopPromise<SMTPReply>>()
  private var unclaimed = CircularBuffer<SMTPReply>()
  private var failure: (any Error)?

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let reply = unwrapInboundIn(data)
    if let promise = waiting.popFirst() {
      promise.succeed(reply)
    } else {
      unclaimed.append(reply)
    }
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let request = unwrapOutboundIn(data)
    if let failure {
      request.reply.fail(failure)
      promise?.fail(failure)
      return
    }
    if waiting.isEmpty, let reply = unclaimed.popFirst() {
      request.reply.succeed(reply)
    } else {
      waiting.append(request.reply)
    }
    if let bytes = request.bytes {
      context.write(wrapOutboundOut(bytes), promise: promise)
    } else {
      promise?.succeed(())
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    fail(error)
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    fail(SMTPProtocolError(description: "the server closed the connection"))
    context.fireChannelInactive()
  }

  private func fail(_ error: any Error) {
    if failure == nil { failure = error }
    while let promise = waiting.popFirst() { promise.fail(error) }
  }
}
