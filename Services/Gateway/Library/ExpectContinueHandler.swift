import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` (RFC 9110 §10.1.1) with `100 Continue` as soon as the request's
/// head arrives, so that a client holding its body back (curl does for bodies over 1 MiB, such
/// as a CSV import) sends it at once instead of after its own timeout (a second, for curl).
/// Requests without the expectation pass untouched; the final response follows as usual. While
/// an earlier response on the connection is unfinished (a pipelined request), nothing is sent:
/// a 100 would land inside that response; the client sends its body after its timeout instead.
final class ExpectContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPRequestPart
  typealias InboundOut = HTTPRequestPart
  typealias OutboundIn = HTTPResponsePart
  typealias OutboundOut = HTTPResponsePart

  /// Requests whose response has not ended.
  private var unanswered = 0

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .head(let head) = unwrapInboundIn(data) {
      if unanswered == 0, head.headerFields[values: .expect].contains(where: { $0.lowercased() == "100-continue" }) {
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
      }
      unanswered += 1
    }
    context.fireChannelRead(data)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .end = unwrapOutboundIn(data) { unanswered = max(0, unanswered - 1) }
    context.write(data, promise: promise)
  }
}
