import Logging
import NIOCore
import NIOPosix
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension UpstreamProber {
    /// Sends a probe to every upstream that has none in flight. On the event loop.
    func probeRound() {
        for index in upstreams.indices where state.value.inFlight[index] == nil && !state.value.stopped {
            launch(index)
        }
    }

    /// Opens a fresh socket connected to upstream `index` and sends it a fresh request. On the event loop.
    private func launch(_ index: Int) {
        let state = state.value
        let id = state.nextAttempt
        state.nextAttempt += 1
        let request = probe.makeRequest(realm: realm, using: &state.random)
        let upstream = upstreams[index]
        guard let bootstrap = DatagramBootstrap(validatingGroup: eventLoop) else {
            logger.error("health check: the event loop cannot open UDP sockets", metadata: ["upstream": "\(upstream)"])
            report(UpstreamProbeResult(upstream: index, roundTrip: nil))
            return
        }
        let connection = bootstrap.channelInitializer { [self] channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    UpstreamProbeHandler(prober: self, index: index, attempt: id, upstream: upstream, request: request)
                )
            }
        }.connect(to: upstream.socketAddress)
        let attempt = Attempt(id: id, connection: connection)
        state.inFlight[index] = attempt
        attempt.timeout = eventLoop.scheduleTask(in: TimeAmount(timeout)) { [self] in
            finish(index, attempt: id, roundTrip: nil, reason: "no good answer within \(timeout)")
        }
        connection.whenComplete { [self] result in
            connected(index, attempt: id, result: result, datagram: request.datagram)
        }
    }

    /// The socket of attempt `id` on upstream `index` is open (or could not be): sends the request. On the event loop.
    private func connected(
        _ index: Int,
        attempt id: UInt64,
        result: Result<any Channel, any Error>,
        datagram: [UInt8]
    ) {
        switch result {
        case .failure(let error):
            finish(index, attempt: id, roundTrip: nil, reason: "cannot open a socket towards it: \(error)")
        case .success(let channel):
            guard let attempt = state.value.inFlight[index], attempt.id == id else {
                channel.close(promise: nil)
                return
            }
            attempt.sent = .now()
            channel.writeAndFlush(ByteBuffer(bytes: datagram)).whenFailure { [self] error in
                finish(index, attempt: id, roundTrip: nil, reason: "send failed: \(error)")
            }
        }
    }

    /// Ends attempt `id` on upstream `index` (if it is still the one in flight): closes its socket and reports.
    /// On the event loop.
    func finish(_ index: Int, attempt id: UInt64, roundTrip: Duration?, reason: String? = nil) {
        let state = state.value
        guard let attempt = state.inFlight[index], attempt.id == id else { return }
        state.inFlight[index] = nil
        attempt.timeout?.cancel()
        attempt.connection.whenSuccess { $0.close(promise: nil) }
        guard !state.stopped else { return }
        if let reason {
            logger.debug(
                "health check failed",
                metadata: ["upstream": "\(upstreams[index])", "probe": "\(probe.rawValue)", "reason": "\(reason)"]
            )
        }
        report(UpstreamProbeResult(upstream: index, roundTrip: roundTrip))
    }

    /// A good answer came at `received` for attempt `id` on upstream `index`. On the event loop.
    func answered(_ index: Int, attempt id: UInt64, at received: NIODeadline) {
        guard let attempt = state.value.inFlight[index], attempt.id == id, let sent = attempt.sent else { return }
        let nanoseconds = max(0, (received - sent).nanoseconds)
        finish(index, attempt: id, roundTrip: .nanoseconds(nanoseconds))
    }
}

/// Reads what comes back on one probe's socket: a good answer ends the probe, an ICMP error (ECONNREFUSED) fails
/// it at once, anything else is ignored (logged once at debug level).
///
/// Not `Sendable`: a channel handler, used on its channel's event loop (the prober's).
final class UpstreamProbeHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let prober: UpstreamProber
    private let index: Int
    private let attempt: UInt64
    private let upstream: IPEndpoint
    private let request: UpstreamProbeRequest
    private var loggedIgnored = false

    init(prober: UpstreamProber, index: Int, attempt: UInt64, upstream: IPEndpoint, request: UpstreamProbeRequest) {
        self.prober = prober
        self.index = index
        self.attempt = attempt
        self.upstream = upstream
        self.request = request
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let received = NIODeadline.now()
        let envelope = unwrapInboundIn(data)
        let source = IPEndpoint(socketAddress: envelope.remoteAddress)
        do throws(UpstreamProbeAnswerError) {
            guard source.map({ $0.unmappingIPv4 == upstream.unmappingIPv4 }) ?? false else {
                throw UpstreamProbeAnswerError(reason: "from \(envelope.remoteAddress), not the upstream")
            }
            try envelope.data.withUnsafeReadableBytes { bytes throws(UpstreamProbeAnswerError) in
                try request.check(bytes)
            }
            prober.answered(index, attempt: attempt, at: received)
        } catch {
            guard !loggedIgnored else { return }
            loggedIgnored = true
            prober.logger.debug(
                "health check: answer ignored",
                metadata: ["upstream": "\(upstream)", "probe": "\(request.probe.rawValue)", "reason": "\(error)"]
            )
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason: String
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED {
            reason = "refused (an ICMP error came back)"
        } else {
            reason = "\(error)"
        }
        prober.finish(index, attempt: attempt, roundTrip: nil, reason: reason)
    }
}

extension IPEndpoint {
    /// The same address and port as swift-nio takes it.
    var socketAddress: SocketAddress {
        withSockAddr { address, _ in
            switch family {
            case .ipv4:
                SocketAddress(UnsafeRawPointer(address).load(as: sockaddr_in.self), host: addressText)
            case .ipv6:
                SocketAddress(UnsafeRawPointer(address).load(as: sockaddr_in6.self), host: addressText)
            }
        }
    }
}
