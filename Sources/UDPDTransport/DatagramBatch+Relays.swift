import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension DatagramBatch {
    /// Queues the first `length` bytes of `slot`'s buffer to go where `relay` says. The slot stays reserved until
    /// ``flushRelays()``; relays queued for another socket are sent first.
    func queueRelay(slot: Int, length: Int, via relay: DatagramRelay) {
        let replier = relay.replier
        if let target = relayTarget, target.socket !== replier.socket { flushRelays() }
        if relayTarget == nil { relayTarget = replier }
        let index = pendingRelays
        let control = relayControl + index * DestinationControlMessage.capacity
        let controlLength = DestinationControlMessage.write(
            source: relay.source,
            replySource: replier.socket.replySource,
            into: control
        )
        let name = relayNames + index
        let nameLength = relay.peer.withSockAddr { address, addressLength in
            UnsafeMutableRawPointer(name).copyMemory(from: address, byteCount: Int(addressLength))
            return addressLength
        }
        Self.prepare(
            relayHeaders + index,
            vector: relayVectors + index,
            payload: buffer(slot).baseAddress,
            length: length,
            name: UnsafeMutableRawPointer(name),
            nameLength: nameLength,
            control: control,
            controlLength: controlLength
        )
        pendingRelays += 1
        reservedSlots = max(reservedSlots, slot + 1)
    }

    /// Sends the queued relays through their listener's socket, as few sendmmsg calls as the kernel allows, and
    /// frees their slots. Like replies they are sent without waiting: a full send buffer drops them, counted as
    /// ``DropReason/sendBufferFull``. A relay the kernel refuses otherwise, or one whose listener was closed by a
    /// reload meanwhile, is counted as a send error on that listener.
    func flushRelays() {
        guard let target = relayTarget else { return }
        let total = pendingRelays
        defer {
            pendingRelays = 0
            reservedSlots = 0
            relayTarget = nil
        }
        // Held open while the relays go out; a listener that a reload removed is closing: nothing is sent on it.
        let sent: Void? = target.socket.descriptor.withDescriptor { fd in
            sendRelays(total, through: fd, counters: target.counters)
        }
        if sent == nil { target.counters.addDrop(.sendError, count: UInt64(total)) }
    }

    /// Sends `total` queued relays on `fd`, the relay target's socket, held open by the caller.
    private func sendRelays(_ total: Int, through fd: CInt, counters: ListenerCounters) {
        var next = 0
        var sentPackets: UInt64 = 0
        var sentBytes: UInt64 = 0
        while next < total {
            let headers = relayHeaders + next
            let sent: Int
            do {
                do {
                    sent = Int(
                        try systemCall("sendmmsg") {
                            cudpd_sendmmsg(fd, headers, UInt32(total - next), cudpd_msg_dontwait)
                        }
                    )
                } catch  where error.errno == ENOSYS {
                    // No sendmmsg on this platform: one sendmsg per relay.
                    try systemCall("sendmsg") { sendmsg(fd, &headers.pointee.msg_hdr, cudpd_msg_dontwait) }
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
            for index in next..<(next + sent) { sentBytes &+= UInt64(relayVectors[index].iov_len) }
            sentPackets &+= UInt64(sent)
            next += sent
        }
        if sentPackets > 0 { counters.countSent(packets: sentPackets, bytes: sentBytes) }
    }
}
