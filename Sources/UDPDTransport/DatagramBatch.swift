import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The memory of one worker's recvmmsg/sendmmsg batch: per slot a datagram buffer, the peer's address, and a
/// control buffer each way, all allocated once so that the steady state allocates nothing.
///
/// A reply is written into the slot's own buffer and sent from it. So is a relay (a forward's upstream reply to its
/// client): its slot stays reserved, and the next socket is received into the slots after it, until the relays are
/// sent together (see `DatagramBatch+Relays.swift`). Not `Sendable`: one worker thread owns it.
final class DatagramBatch {
    let capacity: Int
    let bufferSize: Int
    private let buffers: UnsafeMutableRawPointer
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let receiveControl: UnsafeMutableRawPointer
    private let sendControl: UnsafeMutableRawPointer
    private let receiveVectors: UnsafeMutablePointer<iovec>
    private let sendVectors: UnsafeMutablePointer<iovec>
    let receiveHeaders: UnsafeMutablePointer<cudpd_mmsghdr>
    let sendHeaders: UnsafeMutablePointer<cudpd_mmsghdr>
    private(set) var pendingReplies = 0
    let relayHeaders: UnsafeMutablePointer<cudpd_mmsghdr>
    let relayNames: UnsafeMutablePointer<sockaddr_storage>
    let relayControl: UnsafeMutableRawPointer
    let relayVectors: UnsafeMutablePointer<iovec>
    /// Relays queued in `relayHeaders`, all for ``relayTarget``'s socket.
    var pendingRelays = 0
    /// The front slots whose buffers hold queued relays; receiving starts after them.
    var reservedSlots = 0
    /// The listener the queued relays go through.
    var relayTarget: DatagramReplier?

    init(capacity: Int, bufferSize: Int) {
        precondition(capacity > 0 && bufferSize > 0)
        self.capacity = capacity
        self.bufferSize = bufferSize
        let controlSize = DestinationControlMessage.capacity
        buffers = .allocate(byteCount: capacity * bufferSize, alignment: 16)
        names = .allocate(capacity: capacity)
        receiveControl = .allocate(byteCount: capacity * controlSize, alignment: 16)
        sendControl = .allocate(byteCount: capacity * controlSize, alignment: 16)
        receiveVectors = .allocate(capacity: capacity)
        sendVectors = .allocate(capacity: capacity)
        receiveHeaders = .allocate(capacity: capacity)
        sendHeaders = .allocate(capacity: capacity)
        relayHeaders = .allocate(capacity: capacity)
        relayNames = .allocate(capacity: capacity)
        relayControl = .allocate(byteCount: capacity * controlSize, alignment: 16)
        relayVectors = .allocate(capacity: capacity)
        relayHeaders.initialize(repeating: cudpd_mmsghdr(), count: capacity)
        receiveHeaders.initialize(repeating: cudpd_mmsghdr(), count: capacity)
        sendHeaders.initialize(repeating: cudpd_mmsghdr(), count: capacity)
        for slot in 0..<capacity {
            receiveVectors[slot] = iovec(iov_base: buffer(slot).baseAddress, iov_len: bufferSize)
            receiveHeaders[slot].msg_hdr.msg_iov = receiveVectors + slot
            receiveHeaders[slot].msg_hdr.msg_iovlen = 1
            receiveHeaders[slot].msg_hdr.msg_name = UnsafeMutableRawPointer(names + slot)
            receiveHeaders[slot].msg_hdr.msg_control = receiveControl + slot * controlSize
        }
        resetReceiveHeaders(from: 0, count: capacity)
    }

    deinit {
        buffers.deallocate()
        names.deallocate()
        receiveControl.deallocate()
        sendControl.deallocate()
        receiveVectors.deallocate()
        sendVectors.deallocate()
        receiveHeaders.deallocate()
        sendHeaders.deallocate()
        relayHeaders.deallocate()
        relayNames.deallocate()
        relayControl.deallocate()
        relayVectors.deallocate()
    }

    /// The whole buffer of `slot`.
    @inline(__always)
    func buffer(_ slot: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: buffers + slot * bufferSize, count: bufferSize)
    }

    /// Restores the lengths the kernel overwrote in `count` receive headers from `first`.
    func resetReceiveHeaders(from first: Int, count: Int) {
        for slot in first..<(first + count) {
            receiveHeaders[slot].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            receiveHeaders[slot].msg_hdr.msg_controllen = numericCast(DestinationControlMessage.capacity)
            receiveHeaders[slot].msg_hdr.msg_flags = 0
            receiveHeaders[slot].msg_len = 0
        }
    }

    /// The peer of a received slot; an IPv4 peer of a dual-stack socket as IPv4 (replies still go to the raw name).
    @inline(__always)
    func peer(_ slot: Int) -> IPEndpoint? {
        IPEndpoint(UnsafeRawPointer(names + slot))?.unmappingIPv4
    }

    /// Queues the first `length` bytes of `slot`'s buffer as a reply to its peer, from `source`.
    @inline(__always)
    func queueReply(slot: Int, length: Int, source: DatagramDestination, replySource: ReplySource) {
        let index = pendingReplies
        let control = sendControl + index * DestinationControlMessage.capacity
        let controlLength = DestinationControlMessage.write(source: source, replySource: replySource, into: control)
        Self.prepare(
            sendHeaders + index,
            vector: sendVectors + index,
            payload: buffer(slot).baseAddress,
            length: length,
            name: UnsafeMutableRawPointer(names + slot),
            nameLength: receiveHeaders[slot].msg_hdr.msg_namelen,
            control: control,
            controlLength: controlLength
        )
        pendingReplies += 1
    }

    /// Points an outgoing header at its payload, its peer's address and its control message (none when
    /// `controlLength` is 0).
    @inline(__always)
    static func prepare(
        _ header: UnsafeMutablePointer<cudpd_mmsghdr>,
        vector: UnsafeMutablePointer<iovec>,
        payload: UnsafeMutableRawPointer?,
        length: Int,
        name: UnsafeMutableRawPointer,
        nameLength: socklen_t,
        control: UnsafeMutableRawPointer,
        controlLength: Int
    ) {
        vector.pointee = iovec(iov_base: payload, iov_len: length)
        header.pointee.msg_hdr.msg_name = name
        header.pointee.msg_hdr.msg_namelen = nameLength
        header.pointee.msg_hdr.msg_iov = vector
        header.pointee.msg_hdr.msg_iovlen = 1
        header.pointee.msg_hdr.msg_control = controlLength > 0 ? control : nil
        header.pointee.msg_hdr.msg_controllen = numericCast(controlLength)
        header.pointee.msg_hdr.msg_flags = 0
        header.pointee.msg_len = 0
    }

    /// Forgets the queued replies after they were sent.
    func clearReplies() {
        pendingReplies = 0
    }

    /// The payload length of queued reply `index`.
    func replyLength(_ index: Int) -> Int {
        sendVectors[index].iov_len
    }
}
