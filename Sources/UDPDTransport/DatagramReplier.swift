import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Sends a reply on a listener's socket from any thread, from the address the client asked, without waiting
/// (MSG_DONTWAIT): a full send buffer drops the reply, counted, rather than stalling the sending thread.
///
/// Handlers that answer later (forward, exec) keep one with the request. `Sendable`: it holds only the socket, whose
/// concurrent `sendmsg` calls the kernel serialises, and atomic counters.
public struct DatagramReplier: Sendable {
    /// The listener's socket.
    public let socket: UDPListenerSocket
    /// The listener's counters; a sent reply counts as sent, a refused one as a send error.
    public let counters: ListenerCounters

    /// Creates a replier for `socket`.
    public init(socket: UDPListenerSocket, counters: ListenerCounters) {
        self.socket = socket
        self.counters = counters
    }

    /// Sends `payload` to `peer` from `source`. Returns whether the kernel took it; a failure is counted (as
    /// ``DropReason/sendBufferFull`` when the send buffer or the device queue is full, else as
    /// ``DropReason/sendError``).
    @discardableResult
    public func send(_ payload: UnsafeRawBufferPointer, to peer: IPEndpoint, from source: DatagramDestination) -> Bool {
        // Held open for the send: a listener that a reload removed is closing, and nothing is sent on it.
        let sent = socket.descriptor.withDescriptor { fd in send(payload, to: peer, from: source, on: fd) }
        guard let sent else {
            counters.addDrop(.sendError)
            return false
        }
        return sent
    }

    private func send(
        _ payload: UnsafeRawBufferPointer,
        to peer: IPEndpoint,
        from source: DatagramDestination,
        on fd: CInt
    ) -> Bool {
        let replySource = socket.replySource
        var control = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let sent: Result<Int, SystemCallError> = withUnsafeMutableBytes(of: &control) { controlBytes in
            let controlLength = DestinationControlMessage.write(
                source: source,
                replySource: replySource,
                into: controlBytes.baseAddress!
            )
            return peer.withSockAddr { address, addressLength in
                var iov = iovec(
                    iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress),
                    iov_len: payload.count
                )
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_name = UnsafeMutableRawPointer(mutating: address)
                    message.msg_namelen = addressLength
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlLength > 0 ? controlBytes.baseAddress : nil
                    message.msg_controllen = numericCast(controlLength)
                    return Result { () throws(SystemCallError) in
                        try systemCall("sendmsg") { sendmsg(fd, &message, cudpd_msg_dontwait) }
                    }
                }
            }
        }
        if case .failure(let error) = sent {
            _ = DatagramBatch.countUnsent(error, remaining: 1, on: counters)
            return false
        }
        counters.countSent(packets: 1, bytes: UInt64(payload.count))
        return true
    }
}
