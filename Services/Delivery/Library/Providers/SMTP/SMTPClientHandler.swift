import NIOCore

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
