import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A UDP socket a worker serves, with the handler slot and counters of its listener.
///
/// `Sendable`: every property is immutable and `Sendable`.
final class ServedSocket: Sendable {
    let socket: UDPListenerSocket
    let slot: DatagramHandlerSlot
    let counters: ListenerCounters
    let replier: DatagramReplier
    /// udpd's own listeners: a datagram from one of them is never handed to the handler.
    let ownListeners: OwnListenerRegistry

    init(
        socket: UDPListenerSocket,
        slot: DatagramHandlerSlot,
        counters: ListenerCounters,
        ownListeners: OwnListenerRegistry
    ) {
        self.socket = socket
        self.slot = slot
        self.counters = counters
        self.ownListeners = ownListeners
        self.replier = DatagramReplier(socket: socket, counters: counters)
    }
}

extension DatagramBatch {
    /// Serves `served` until its receive queue is empty or `maximumBatches` batches were handled (so that one busy
    /// socket cannot starve the others of its worker). Returns whether the queue may still hold datagrams.
    ///
    /// Datagrams are received into the slots after those that queued relays reserve (all of them are freed by
    /// sending the relays first when none is left).
    ///
    /// The socket is held open for the whole drain (``SocketDescriptor/withDescriptor(_:)``): a reload that closes
    /// it meanwhile closes it when the drain ends, so no call here reaches a number that names another socket.
    func drain(_ served: ServedSocket, maximumBatches: Int, useBatchCalls: inout Bool) -> Bool {
        var batchCalls = useBatchCalls
        defer { useBatchCalls = batchCalls }
        let more = served.socket.descriptor.withDescriptor { fd in
            for _ in 0..<maximumBatches {
                if reservedSlots == capacity { flushRelays() }
                let first = reservedSlots
                let room = capacity - first
                let received = receive(fd, served, first: first, room: room, &batchCalls)
                guard received > 0 else { return false }
                serve(served, first: first, count: received)
                send(fd, served.counters, &batchCalls)
                resetReceiveHeaders(from: first, count: received)
                if received < room { return false }
            }
            return true
        }
        return more ?? false
    }

    /// Receives up to `room` datagrams into the slots from `first`, without blocking; 0 when nothing is waiting.
    private func receive(
        _ fd: CInt,
        _ served: ServedSocket,
        first: Int,
        room: Int,
        _ useBatchCalls: inout Bool
    ) -> Int {
        if useBatchCalls {
            do {
                let count = try nonBlockingSystemCall("recvmmsg") {
                    cudpd_recvmmsg(fd, receiveHeaders + first, UInt32(room), cudpd_msg_dontwait)
                }
                return Int(count ?? 0)
            } catch  where error.errno == ENOSYS {
                useBatchCalls = false
            } catch {
                served.slot.handler.receiveFailed(error)
                return 0
            }
        }
        let header = receiveHeaders + first
        let length: Int?
        do {
            length = try nonBlockingSystemCall("recvmsg") { recvmsg(fd, &header.pointee.msg_hdr, cudpd_msg_dontwait) }
        } catch {
            served.slot.handler.receiveFailed(error)
            return 0
        }
        guard let length else { return 0 }
        header.pointee.msg_len = UInt32(length)
        return 1
    }

    /// Asks the handler about each received datagram and queues the replies. A datagram whose source is one of
    /// udpd's own listeners never reaches the handler, whatever it is: answering it would start a loop.
    private func serve(_ served: ServedSocket, first: Int, count: Int) {
        let handler = served.slot.handler
        let ownListeners = served.ownListeners.current
        let counters = served.counters
        let replySource = served.socket.replySource
        let localEndpoint = served.socket.localEndpoint
        var receivedBytes: UInt64 = 0
        for index in first..<(first + count) {
            let header = receiveHeaders + index
            let length = Int(header.pointee.msg_len)
            receivedBytes &+= UInt64(length)
            if header.pointee.msg_hdr.msg_flags & cudpd_msg_trunc != 0 {
                counters.addDrop(.truncated)
                continue
            }
            guard let peer = peer(index) else { continue }
            if ownListeners.contains(peer) {
                counters.addDrop(.ownSource)
                continue
            }
            let destination: DatagramDestination
            switch replySource {
            case .pktinfo, .recvdstaddr:
                guard
                    let read = DestinationControlMessage.read(
                        from: &header.pointee.msg_hdr,
                        localPort: localEndpoint.port
                    )
                else {
                    counters.addDrop(.noDestination)
                    continue
                }
                destination = read
            case .bound, .kernel, .connection:
                destination = DatagramDestination(endpoint: localEndpoint, interfaceIndex: 0)
            }
            let verdict = handler.handle(
                buffer(index),
                length: length,
                peer: peer,
                destination: destination,
                replier: served.replier
            )
            switch verdict {
            case .reply(let replyLength):
                queueReply(
                    slot: index,
                    length: min(replyLength, bufferSize),
                    source: destination,
                    replySource: replySource
                )
            case .noReply:
                break
            case .drop(let reason):
                counters.addDrop(reason)
            case .relay(let relayLength, let relay):
                queueRelay(slot: index, length: min(relayLength, bufferSize), via: relay)
            }
        }
        counters.countReceived(packets: UInt64(count), bytes: receivedBytes)
    }

    /// Sends the queued replies without waiting (MSG_DONTWAIT): a socket whose send buffer is full drops the rest
    /// of the batch, counted as ``DropReason/sendBufferFull``, instead of stalling every other socket of this
    /// thread; a reply the kernel refuses for another reason is counted as ``DropReason/sendError`` and skipped.
    private func send(_ fd: CInt, _ counters: ListenerCounters, _ useBatchCalls: inout Bool) {
        let total = pendingReplies
        var next = 0
        var sentPackets: UInt64 = 0
        var sentBytes: UInt64 = 0
        while next < total {
            let sent: Int
            do {
                if useBatchCalls {
                    let headers = sendHeaders + next
                    sent = Int(
                        try systemCall("sendmmsg") {
                            cudpd_sendmmsg(fd, headers, UInt32(total - next), cudpd_msg_dontwait)
                        }
                    )
                } else {
                    let header = sendHeaders + next
                    try systemCall("sendmsg") { sendmsg(fd, &header.pointee.msg_hdr, cudpd_msg_dontwait) }
                    sent = 1
                }
            } catch {
                next += Self.countUnsent(error, remaining: total - next, on: counters)
                continue
            }
            guard sent > 0 else {
                counters.addDrop(.sendError)
                next += 1
                continue
            }
            for index in next..<(next + sent) { sentBytes &+= UInt64(replyLength(index)) }
            sentPackets &+= UInt64(sent)
            next += sent
        }
        clearReplies()
        if sentPackets > 0 { counters.countSent(packets: sentPackets, bytes: sentBytes) }
    }

    /// Counts the datagrams a failed send leaves unsent and returns how many to skip: all `remaining` when the
    /// socket's send buffer is full (the rest of the batch would only fail the same way), else the one refused.
    @inline(__always)
    static func countUnsent(_ error: SystemCallError, remaining: Int, on counters: ListenerCounters) -> Int {
        switch error.errno {
        case EAGAIN, EWOULDBLOCK:
            counters.addDrop(.sendBufferFull, count: UInt64(remaining))
            return remaining
        case ENOBUFS:
            // The device's queue was full: the next datagram may leave by another device.
            counters.addDrop(.sendBufferFull)
            return 1
        default:
            counters.addDrop(.sendError)
            return 1
        }
    }
}
