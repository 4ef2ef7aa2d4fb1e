import Logging
import NIOCore

/// Closes a control connection whose peer takes too long to send a request.
///
/// The clock runs only while the daemon waits for the peer: from the connection's start, and from each reply until
/// the next complete request line arrives. It stops while a request is being handled, however long a reload takes.
/// A peer that trickles a request byte by byte, or never reads its replies, is thus closed after `timeout`, and the
/// pending reply write fails instead of waiting forever.
///
/// Not `Sendable`: it lives in one channel's pipeline, on its event loop.
final class ReadDeadlineHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias InboundOut = LineFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let logger: Logger
    /// Requests read but not yet answered; the clock runs only when this is zero.
    private var unanswered = 0
    private var deadline: Scheduled<Void>?

    /// Creates a handler closing the connection after `timeout` without a request.
    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unanswered += 1
        disarm()
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        unanswered = max(0, unanswered - 1)
        if unanswered == 0 { arm(context: context) }
    }

    private func arm(context: ChannelHandlerContext) {
        disarm()
        let timeout = self.timeout
        let logger = self.logger
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            logger.debug("closing control connection: no request within \(timeout)")
            context.close(promise: nil)
        }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}

@available(*, unavailable)
extension ReadDeadlineHandler: Sendable {}
