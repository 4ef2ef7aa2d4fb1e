import Logging
import NIOCore
import UDPDTransport

/// The inetd tradition over UDP: one program per datagram, the datagram on its stdin; what it writes to stdout (up
/// to the largest UDP payload) is the reply, sent from the address the client asked once the program has exited.
/// A program that writes nothing sends no reply.
///
/// `Sendable`: it holds only the `Sendable` program.
public struct ExecDatagramHandler: DatagramHandler {
    /// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
    static let maxReply = 65_507

    let program: ExecProgram

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        let request = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
        // A refusal (max-instances) is counted by the program; either way nothing is sent now.
        _ = program.run(
            proto: "udp",
            remote: peer,
            local: destination.endpoint,
            input: .bytes(request, captureLimit: Self.maxReply),
            counters: replier.counters
        ) { outcome in
            guard !outcome.timedOut, !outcome.standardOutput.isEmpty else { return }
            outcome.standardOutput.withUnsafeBytes { _ = replier.send($0, to: peer, from: destination) }
        }
        return .noReply
    }
}

/// What a SwiftNIO TCP listener does with a connection of an exec service: it closes it, counted as
/// `handler_failed`. Exec services accept their own connections (see ``ExecTCPListener``); this serves only a
/// kept listener that a reload could not move to the acceptor (out of descriptors), until the next reload.
///
/// Not `Sendable`: it lives on its connection's event loop.
final class ExecUnavailableStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let counters: ListenerCounters

    init(counters: ListenerCounters) {
        self.counters = counters
    }

    func channelActive(context: ChannelHandlerContext) {
        counters.addDrop(.handlerFailed)
        context.close(promise: nil)
    }
}
