import Logging
import NIOCore
import NIOPosix
import UDPDTransport

/// Relays one accepted TCP connection to the upstream: it opens one upstream connection (on the same event loop,
/// with a connect timeout), then copies bytes both ways.
///
/// Backpressure: a side is read only while the other side's channel is writable. Half-close: when one side ends its
/// input, the other side's output is shut once what was read has been written; the connection closes when both
/// directions have ended, or at once when either side fails.
///
/// Not `Sendable`: it lives on its connection's event loop, and so does its partner on the upstream connection.
final class ForwardStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let upstream: SocketAddress?
    private let connectTimeout: Duration
    private let counters: ListenerCounters?
    private let failures: RateLimitedLog?
    private var partner: ForwardStreamHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false

    /// The client side: connects to `upstream` when the connection becomes active.
    init(upstream: SocketAddress, connectTimeout: Duration, counters: ListenerCounters, failures: RateLimitedLog) {
        self.upstream = upstream
        self.connectTimeout = connectTimeout
        self.counters = counters
        self.failures = failures
    }

    /// The upstream side, paired with `partner`.
    private init(partner: ForwardStreamHandler) {
        self.upstream = nil
        self.connectTimeout = .zero
        self.counters = nil
        self.failures = nil
        self.partner = partner
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard let upstream, partner == nil else { return }
        let client = NIOLoopBound(self, eventLoop: context.eventLoop)
        let milliseconds = connectTimeout.components.seconds * 1000
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.milliseconds(milliseconds))
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upstreamSide = ForwardStreamHandler(partner: client.value)
                    client.value.partner = upstreamSide
                    try channel.pipeline.syncOperations.addHandler(upstreamSide)
                }
            }
            .connect(to: upstream)
            .whenComplete { result in
                let handler = client.value
                switch result {
                case .success:
                    handler.partnerBecameWritable()
                case .failure(let error):
                    handler.partner = nil
                    handler.counters?.addDrop(.upstreamError)
                    handler.failures?.warning(
                        "cannot connect to the upstream",
                        metadata: [
                            "upstream": "\(upstream)", "error": "\(error)",
                        ]
                    )
                    handler.context?.close(promise: nil)
                }
            }
    }

    // MARK: Inbound: what this side reads goes to the partner

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerClose()
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            inputClosed = true
            partner?.partnerEndOfInput()
            if outputClosed { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound: read only while the partner can take more

    func read(context: ChannelHandlerContext) {
        if let partner, partner.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    // MARK: Called by the partner, on the same event loop

    /// Whether this side's channel is connected and can take more (an upstream still connecting cannot).
    private var isWritable: Bool {
        guard let channel = context?.channel else { return false }
        return channel.isActive && channel.isWritable
    }

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerEndOfInput() {
        guard let context else { return }
        outputClosed = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            let handler = bound.value
            guard let context = handler.context else { return }
            if handler.inputClosed {
                context.close(promise: nil)
            } else {
                context.close(mode: .output, promise: nil)
            }
        }
    }

    private func partnerClose() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}
