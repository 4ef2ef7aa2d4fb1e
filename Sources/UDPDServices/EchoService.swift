import NIOCore
import UDPDTransport

/// RFC 862 echo over UDP: the datagram is its own reply, sent from the address it was sent to.
///
/// The reply is the request buffer itself, so answering costs no copy and no allocation.
public struct EchoDatagramHandler: DatagramHandler {
    /// Creates the handler.
    public init() {}

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        ReflectionGuard.refuses(peer) ? .drop(.reflection) : .reply(length: length)
    }
}

/// RFC 862 echo over TCP: every byte read is written back, with backpressure (reads stop while writes queue).
public final class EchoStreamHandler: ChannelDuplexHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Creates the handler.
    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The client is done sending: finish writing what it sent, then close our side too.
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                bound.value.close(mode: .output, promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
