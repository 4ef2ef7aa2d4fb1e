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

/// The inetd tradition over TCP: one program per connection, with the connection itself as its stdin and stdout.
/// udpd reads nothing from the connection and closes its own descriptor once the program has its copy, so the
/// connection counts as closed in udpd's counters from then on, and ends when the program (and any child it left
/// holding the socket) exits or is killed at `timeout`.
///
/// Not `Sendable`: it lives on its connection's event loop.
final class ExecStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private let program: ExecProgram
    private let counters: ListenerCounters

    init(program: ExecProgram, counters: ListenerCounters) {
        self.program = program
        self.counters = counters
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        let channel = context.channel
        guard let local = channel.localAddress.flatMap(IPEndpoint.init(nio:)),
            let remote = channel.remoteAddress.flatMap(IPEndpoint.init(nio:)),
            let socket = ConnectedSocketLookup.duplicate(local: local, remote: remote)
        else {
            counters.addDrop(.handlerFailed)
            program.logger.error("cannot find the connection's socket to give to the program")
            context.close(promise: nil)
            return
        }
        let started = program.run(
            proto: "tcp",
            remote: remote,
            local: local,
            input: .socket(socket),
            counters: counters
        ) { _ in }
        if !started { SocketDescriptor(taking: socket).close() }
        // udpd's own descriptor goes now: closing it (without shutdown) leaves the connection to the program, and
        // SwiftNIO would otherwise read the program's input when the client half-closes.
        context.close(promise: nil)
    }

    /// Nothing is ever read: the bytes are the program's.
    func read(context: ChannelHandlerContext) {}
}

extension IPEndpoint {
    /// The endpoint of a SwiftNIO socket address; `nil` for a Unix domain address.
    init?(nio address: SocketAddress) {
        guard let endpoint = (address.withSockAddr { pointer, _ in IPEndpoint(UnsafeRawPointer(pointer)) }) else {
            return nil
        }
        self = endpoint
    }
}
