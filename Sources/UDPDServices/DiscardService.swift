import NIOCore
import UDPDTransport

/// RFC 863 discard over UDP: every datagram is received, counted and thrown away; nothing is ever sent.
public struct DiscardDatagramHandler: DatagramHandler {
    /// Creates the handler.
    public init() {}

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        .noReply
    }
}

/// RFC 863 discard over TCP: every byte is read and dropped until the client closes.
public final class DiscardStreamHandler: ChannelInboundHandler, Sendable {
    public typealias InboundIn = ByteBuffer

    /// Creates the handler.
    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
