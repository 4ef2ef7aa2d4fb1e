import Logging
import NIOCore
import UDPDTransport

/// Checks a krb5-framed TCP stream (RFC 4120 7.2.2, RFC 3244): every message is a 4-byte big-endian length and
/// that many bytes. A length over the limit, or with the reserved high bit set, closes the connection, counted by
/// reason, before the offending header is passed on; everything else passes through unchanged, without copying
/// or waiting for whole messages.
///
/// Not `Sendable`: it lives on its connection's event loop.
final class Krb5FrameChecker: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: Int
    private let counters: ListenerCounters
    private let logger: Logger
    /// Bytes of the current message's header read so far (held back until the header is complete and valid).
    private var header: [UInt8] = []
    /// Bytes of the current message's body still to come.
    private var remaining = 0
    private var failed = false

    init(limit: Int, counters: ListenerCounters, logger: Logger) {
        self.limit = limit
        self.counters = counters
        self.logger = logger
    }

    /// The checker for `limit`, or nothing when the service has no framing.
    static func handlers(limit: Int?, counters: ListenerCounters, logger: Logger) -> [any ChannelHandler] {
        limit.map { [Krb5FrameChecker(limit: $0, counters: counters, logger: logger)] } ?? []
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var input = unwrapInboundIn(data)
        var output = context.channel.allocator.buffer(capacity: input.readableBytes)
        while input.readableBytes > 0 {
            if remaining > 0 {
                let count = min(remaining, input.readableBytes)
                var slice = input.readSlice(length: count)!
                output.writeBuffer(&slice)
                remaining -= count
                continue
            }
            header.append(input.readInteger(as: UInt8.self)!)
            guard header.count == 4 else { continue }
            let length = header.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            if length & 0x8000_0000 != 0 {
                return fail(context, output, .frameReservedBit, length: length)
            }
            if Int(length) > limit {
                return fail(context, output, .frameTooLong, length: length)
            }
            output.writeBytes(header)
            header.removeAll(keepingCapacity: true)
            remaining = Int(length)
        }
        if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
    }

    /// Passes on what came before the bad header, then closes the connection.
    private func fail(_ context: ChannelHandlerContext, _ output: ByteBuffer, _ reason: DropReason, length: UInt32) {
        failed = true
        counters.addDrop(reason)
        logger.info("closing a connection: bad krb5 frame", metadata: [
            "reason": "\(reason)", "length": "\(length)", "max_message": "\(limit)",
        ])
        if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
        context.close(promise: nil)
    }
}
