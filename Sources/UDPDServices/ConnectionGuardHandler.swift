import NIOCore
import UDPDTransport

/// The first handler of every accepted connection: closes it when it has been idle for `idle-timeout`, and, for
/// framed services, when a message announces more than `max-message` bytes or sets the reserved bit, or when a
/// message takes longer than the request deadline from its first byte to its last (slow senders). Every closure
/// is counted on the listener by reason. Bytes pass through unchanged.
///
/// Not `Sendable`: it lives on its connection's event loop, and its timers run there too.
final class ConnectionGuardHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let idleTimeout: TimeAmount
    private let requestDeadline: TimeAmount?
    private let counters: ListenerCounters
    private var decoder: KerberosFrameDecoder?
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    private var messageDeadline: Scheduled<Void>?
    private var closing = false

    init(policy: ConnectionPolicy, counters: ListenerCounters) {
        idleTimeout = Self.timeAmount(policy.idleTimeout)
        requestDeadline = policy.requestDeadline.map(Self.timeAmount)
        decoder = policy.maxMessage.map { KerberosFrameDecoder(maxMessage: $0) }
        self.counters = counters
    }

    func handlerAdded(context: ChannelHandlerContext) {
        lastActivity = .now()
        scheduleIdleCheck(context, at: lastActivity + idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        lastActivity = .now()
        if decoder != nil {
            let buffer = unwrapInboundIn(data)
            let outcome: Result<KerberosFrameDecoder.Progress, KerberosFrameDecoder.Failure> =
                buffer.withUnsafeReadableBytes { bytes in
                    Result { () throws(KerberosFrameDecoder.Failure) in try decoder!.consume(bytes) }
                }
            switch outcome {
            case .failure(.reservedBit):
                return close(context, counting: .frameReservedBit)
            case .failure(.tooLong):
                return close(context, counting: .frameTooLong)
            case .success(let progress):
                trackDeadline(context, progress)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    /// A message that completed ends its deadline; one that started (or is still open after others completed)
    /// gets a fresh one.
    private func trackDeadline(_ context: ChannelHandlerContext, _ progress: KerberosFrameDecoder.Progress) {
        guard let requestDeadline else { return }
        if progress.completed > 0 || !progress.inMessage {
            messageDeadline?.cancel()
            messageDeadline = nil
        }
        if progress.inMessage && messageDeadline == nil {
            messageDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: requestDeadline) {
                self.close(context, counting: .requestDeadline)
            }
        }
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            let due = self.lastActivity + self.idleTimeout
            if NIODeadline.now() >= due {
                self.close(context, counting: .idleTimeout)
            } else {
                self.scheduleIdleCheck(context, at: due)
            }
        }
    }

    private func close(_ context: ChannelHandlerContext, counting reason: DropReason) {
        guard !closing else { return }
        closing = true
        cancelTimers()
        counters.addDrop(reason)
        // Through the whole pipeline, so that the handlers after this one (a relay) see udpd's own close as such.
        context.channel.close(promise: nil)
    }

    private func cancelTimers() {
        idleCheck?.cancel()
        idleCheck = nil
        messageDeadline?.cancel()
        messageDeadline = nil
    }

    /// Clamped rather than trapping: `idle-timeout` is bounded at validation, and NIO's deadlines saturate too.
    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.saturatingNanoseconds)
    }
}
