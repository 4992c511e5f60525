import NIOCore

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
