import Logging
import NIOCore
import NIOPosix
import UDPDTransport

/// Relays one accepted TCP connection to the upstream: it opens one upstream connection (on the same event loop,
/// with a connect timeout), then copies bytes both ways, so that each end sees what it would see talking to the
/// other directly.
///
/// - Upstreams: the connection goes to the first upstream of the service's ``UpstreamPool`` that is up. A refused or
///   timed-out connect marks that upstream down and tries the next one that is up (nothing was read from the
///   client yet, so no request reaches two upstreams); with none up, the client is closed at once and counted as
///   `no_upstream`, so that it moves on to its next server at the speed of a refusal.
/// - Backpressure: a side is read only while the other side's channel is connected and writable, so udpd never
///   takes in more than one read's worth beyond what the other side's socket can take.
/// - Half-close: when one side ends its input (FIN), the other side's output is shut (`shutdown(SHUT_WR)`) once
///   what was read has been written; the other direction goes on until it ends too.
/// - Reset: when one side resets (or fails in any way udpd did not ask for), what was already read from it is
///   written to the other side, which is then reset too (`SO_LINGER` 0), so that a client sees the upstream's last
///   answers and then `ECONNRESET`, as it would directly. Counted by side as `client_reset` or `upstream_reset`.
/// - Close: when udpd itself closes one side (both directions ended, a limit, a timeout, shutdown), the other side
///   is closed normally once what was read has been written.
/// - Session log: with `log-sessions: true`, one line when the relay's upstream connection opens (client, local
///   address asked, upstream, the local port udpd used towards it) and one when the client side closes, with the
///   bytes each way.
/// - PROXY protocol: with `proxy-protocol: v2`, the upstream connection starts with a ``ProxyProtocolHeader`` naming
///   the client and the local address it asked, written before any byte of the client's.
///
/// Not `Sendable`: it lives on its connection's event loop, and so does its partner on the upstream connection.
final class ForwardStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Which end of the relay a handler serves.
    private enum Side {
        case client
        case upstream

        /// The reason counted when this side ends without udpd asking.
        var resetReason: DropReason { self == .client ? .clientReset : .upstreamReset }
    }

    private let side: Side
    /// The client side's upstreams; `nil` on the upstream side.
    private let upstreams: UpstreamPool?
    /// The upstream this relay connects or connected to: the client side's current attempt, the upstream side's own.
    private var upstreamIndex: Int?
    private let connectTimeout: Duration
    private let counters: ListenerCounters
    private let failures: RateLimitedLog?
    /// The client side: whether the upstream connection starts with a PROXY protocol v2 header.
    private let sendsProxyHeader: Bool
    /// The client side: where `log-sessions` lines go; `nil` without the key.
    private let sessionLog: RateLimitedLog?
    /// The client side: with `transparent: true`, where upstream sockets bound to the client's own address come from.
    private let transparentSockets: TransparentSockets?
    /// The client side: what the session log says of the relay once its upstream connection is open.
    private var sessionFields: Logger.Metadata?
    /// The client side: bytes read from the client, and bytes relayed to it.
    private var bytesFromClient = 0
    private var bytesToClient = 0
    private var partner: ForwardStreamHandler?
    private var context: ChannelHandlerContext?
    /// A read was asked for while the partner could not take more; it is issued when the partner can.
    private var pendingRead = false
    /// This side's peer sent FIN.
    private var inputEnded = false
    /// This side's output was shut (or is being shut) because the partner's peer sent FIN.
    private var outputEnded = false
    /// udpd closes this side itself; an end udpd did not ask for is a failure of the peer (a reset).
    private var closeRequested = false
    /// This side's channel reported an error (a reset, usually).
    private var failed = false
    /// The upstream side: the pool its connection counts in as a session of upstream ``upstreamIndex``, until it
    /// goes inactive.
    private var countedIn: UpstreamPool?

    /// The client side: connects to the first of `upstreams` that is up when the connection becomes active.
    init(
        upstreams: UpstreamPool,
        connectTimeout: Duration,
        counters: ListenerCounters,
        failures: RateLimitedLog,
        sendsProxyHeader: Bool = false,
        sessionLog: RateLimitedLog? = nil,
        transparentSockets: TransparentSockets? = nil
    ) {
        self.side = .client
        self.transparentSockets = transparentSockets
        self.upstreams = upstreams
        self.connectTimeout = connectTimeout
        self.counters = counters
        self.failures = failures
        self.sendsProxyHeader = sendsProxyHeader
        self.sessionLog = sessionLog
    }

    /// The upstream side, paired with `partner` and counting on its counters.
    private init(partner: ForwardStreamHandler) {
        self.side = .upstream
        self.upstreams = nil
        self.connectTimeout = .zero
        self.counters = partner.counters
        self.failures = nil
        self.sendsProxyHeader = false
        self.sessionLog = nil
        self.transparentSockets = nil
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
        guard let upstreams, partner == nil else { return }
        guard let first = upstreams.firstUp() else {
            counters.addDrop(.noUpstream)
            failures?.warning("no upstream is up; connection closed", metadata: [:])
            return close(afterFlushing: false)
        }
        connect(to: first, of: upstreams, context: context)
    }

    /// Connects the upstream side to upstream `index`; on failure, marks it down and tries the next one that is up.
    private func connect(to index: Int, of upstreams: UpstreamPool, context: ChannelHandlerContext) {
        upstreamIndex = index
        let upstream = upstreams.members[index].address
        let client = NIOLoopBound(self, eventLoop: context.eventLoop)
        let milliseconds = connectTimeout.components.seconds * 1000
        let eventLoop = context.eventLoop
        let bootstrap: @Sendable () -> ClientBootstrap = {
            ClientBootstrap(group: eventLoop)
                .connectTimeout(.milliseconds(milliseconds))
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upstreamSide = ForwardStreamHandler(partner: client.value)
                        upstreamSide.upstreamIndex = index
                        client.value.partner = upstreamSide
                        try channel.pipeline.syncOperations.addHandler(upstreamSide)
                    }
                }
        }
        let connected: EventLoopFuture<any Channel>
        if let transparentSockets {
            connected = connectTransparently(
                to: upstreams.members[index].endpoint,
                through: transparentSockets,
                bootstrap: bootstrap,
                context: context
            )
        } else {
            connected = bootstrap().connect(to: upstream)
        }
        connected
            .whenComplete { result in
                let handler = client.value
                switch result {
                case .success(let channel):
                    upstreams.sessionOpened(index)
                    handler.partner?.countedIn = upstreams
                    if handler.sendsProxyHeader, let header = handler.proxyHeader() {
                        channel.writeAndFlush(channel.allocator.buffer(bytes: header.bytes), promise: nil)
                    }
                    if let log = handler.sessionLog {
                        let fields = handler.sessionMetadata(upstream: upstreams.members[index].endpoint, channel)
                        handler.sessionFields = fields
                        log.notice("TCP relay opened", metadata: fields)
                    }
                    handler.resumeReading()
                case .failure(let error):
                    // The failed attempt's channel must not pass its end on to the client, which may go on elsewhere.
                    handler.partner?.partner = nil
                    handler.partner = nil
                    // A client that went away while the upstream was still connecting is no upstream failure.
                    guard let context = handler.context, context.channel.isActive, !handler.closeRequested else {
                        return
                    }
                    handler.counters.addDrop(.upstreamError)
                    handler.failures?.warning(
                        "cannot connect to the upstream",
                        metadata: [
                            "upstream": "\(upstream)", "error": "\(error)",
                        ]
                    )
                    upstreams.markDown(index, because: "TCP connect: \(error)")
                    // Nothing was read from the client yet: the next upstream that is up gets the connection.
                    if let next = upstreams.firstUp(after: index) {
                        return handler.connect(to: next, of: upstreams, context: context)
                    }
                    // Closed at once, so that the client moves on to its next server (counted once, above).
                    handler.close(afterFlushing: false)
                }
            }
    }

    /// The client side: an upstream connection from the client's own address and port (`transparent: true`). The
    /// socket is made by ``TransparentSockets`` and its handshake watched off the event loop; SwiftNIO adopts it
    /// once connected. A refused or timed-out connect fails the future like SwiftNIO's own connect would.
    private func connectTransparently(
        to upstream: IPEndpoint,
        through sockets: TransparentSockets,
        bootstrap: @escaping @Sendable () -> ClientBootstrap,
        context: ChannelHandlerContext
    ) -> EventLoopFuture<any Channel> {
        let eventLoop = context.eventLoop
        guard let client = context.channel.remoteAddress.flatMap(IPEndpoint.init(socketAddress:)) else {
            return eventLoop.makeFailedFuture(ChannelError.inappropriateOperationForState)
        }
        let promise = eventLoop.makePromise(of: SocketDescriptor.self)
        sockets.connectStream(from: client, to: upstream, timeout: connectTimeout) { result in
            promise.completeWith(result.mapError { $0 as any Error })
        }
        return promise.futureResult.flatMap { socket in
            bootstrap().withConnectedSocket(socket.release())
        }
    }

    /// The client side: the PROXY protocol header naming this connection's client and the local address it asked.
    private func proxyHeader() -> ProxyProtocolHeader? {
        guard let channel = context?.channel,
            let client = channel.remoteAddress.flatMap(IPEndpoint.init(socketAddress:)),
            let local = channel.localAddress.flatMap(IPEndpoint.init(socketAddress:))
        else { return nil }
        return ProxyProtocolHeader(client: client.unmappingIPv4, local: local.unmappingIPv4, transport: .stream)
    }

    /// The client side: the session log's fields for a relay whose upstream connection is `upstreamChannel`.
    private func sessionMetadata(upstream: IPEndpoint, _ upstreamChannel: any Channel) -> Logger.Metadata {
        let channel = context?.channel
        return [
            "client": "\(channel?.remoteAddress.flatMap(IPEndpoint.init(socketAddress:))?.unmappingIPv4 ?? upstream)",
            "local": "\(channel?.localAddress.flatMap(IPEndpoint.init(socketAddress:))?.unmappingIPv4 ?? upstream)",
            "upstream": "\(upstream)",
            "upstream_local_port": "\(upstreamChannel.localAddress?.port ?? 0)",
        ]
    }

    // MARK: Inbound: what this side reads goes to the partner

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if side == .client { bytesFromClient += buffer.readableBytes }
        partner?.relay(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flushRelayed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            inputEnded = true
            partner?.passEndOfInput()
            if outputEnded { close(afterFlushing: true) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Not `closeRequested`: the end is this side's failure, passed on as a reset when the channel goes inactive.
        failed = true
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let pool = countedIn, let index = upstreamIndex {
            countedIn = nil
            pool.sessionEnded(index)
        }
        if let log = sessionLog, var fields = sessionFields {
            sessionFields = nil
            fields["bytes_from_client"] = "\(bytesFromClient)"
            fields["bytes_to_client"] = "\(bytesToClient)"
            fields["end"] = "\(closeRequested || (outputEnded && !failed) ? "closed" : "reset")"
            log.notice("TCP relay closed", metadata: fields)
        }
        if closeRequested {
            partner?.close(afterFlushing: true)
        } else if outputEnded && !failed {
            // SwiftNIO closes a channel whose output is shut when its input ends, without an `inputClosed` event:
            // an orderly end of both directions, passed on as the end of this side's input.
            inputEnded = true
            partner?.passEndOfInput()
        } else {
            // Reset, or failed in any other way (a read or write error): what was read still reaches the partner.
            counters.addDrop(side.resetReason)
            partner?.reset(afterFlushing: true)
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound: read only while the partner can take more; note closes udpd asks for

    func read(context: ChannelHandlerContext) {
        if let partner, partner.canTakeMore {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // A close from further down the pipeline or from the channel (a limit, a timeout, shutdown) is udpd's own.
        if mode == .all { closeRequested = true }
        context.close(mode: mode, promise: promise)
    }

    // MARK: Called by the partner, on the same event loop

    /// Whether this side is connected and can take more (an upstream still connecting cannot, nor a closing side).
    private var canTakeMore: Bool {
        guard let channel = context?.channel, !closeRequested else { return false }
        return channel.isActive && channel.isWritable
    }

    private func relay(_ buffer: ByteBuffer) {
        guard !closeRequested, !outputEnded else { return }
        if side == .client { bytesToClient += buffer.readableBytes }
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func flushRelayed() {
        context?.flush()
    }

    private func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// The partner's peer sent FIN: once what it sent before is written, shut this side's output.
    private func passEndOfInput() {
        guard let context, !closeRequested, !outputEnded else { return }
        outputEnded = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            let handler = bound.value
            guard let context = handler.context, !handler.closeRequested else { return }
            if handler.inputEnded {
                handler.close(afterFlushing: false)
            } else {
                context.close(mode: .output, promise: nil)
            }
        }
    }

    /// Closes this side normally (FIN), after writing what was relayed to it when `afterFlushing`.
    private func close(afterFlushing: Bool) {
        end(afterFlushing: afterFlushing, resetting: false)
    }

    /// Resets this side (RST), after writing what was relayed to it when `afterFlushing`: data read from a side
    /// before it reset reaches the other side before the reset does, as it would have directly.
    private func reset(afterFlushing: Bool) {
        end(afterFlushing: afterFlushing, resetting: true)
    }

    private func end(afterFlushing: Bool, resetting: Bool) {
        guard let context, !closeRequested else { return }
        closeRequested = true
        guard afterFlushing else { return Self.close(context, resetting: resetting) }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            guard let context = bound.value.context else { return }
            Self.close(context, resetting: resetting)
        }
    }

    private static func close(_ context: ChannelHandlerContext, resetting: Bool) {
        if resetting, let options = context.channel as? any SocketOptionProvider {
            // On the channel's own event loop the option is set at once, before the close below.
            _ = options.setSoLinger(linger(l_onoff: 1, l_linger: 0))
        }
        context.close(promise: nil)
    }
}
