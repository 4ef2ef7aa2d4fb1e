import CUDPD
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// What one load thread does: where to send, how many sockets and requests in flight, and when to stop.
struct LoadPlan: Sendable {
    /// The server under test.
    var target: IPEndpoint
    /// The local address the client sockets bind to.
    var source: String
    /// Connected client sockets of this thread.
    var sockets: Int
    /// Requests outstanding on each socket.
    var windowPerSocket: Int
    /// Bytes per request (at least ``LoadWorker/headerSize``).
    var payload: Int
    /// Bytes each reply carries before the request it answers (a PROXY protocol header that a relay added and an
    /// echoing backend sent back).
    var replyPrefix: Int = 0
    /// Monotonic instant (ns) when the warm-up ends and counting starts.
    var measureStart: UInt64
    /// Monotonic instant (ns) when sending stops.
    var measureEnd: UInt64
    /// How long after ``measureEnd`` to wait for the last replies.
    var drainNanoseconds: UInt64
    /// A request unanswered this long is counted lost and replaced.
    var requestTimeoutNanoseconds: UInt64
    /// The most requests this thread sends in all (a bound in count besides the bound in time).
    var maximumRequests: UInt64
}

/// What one load thread counted during the measured interval.
struct LoadTally: Sendable {
    var sent: UInt64 = 0
    var completed: UInt64 = 0
    var lost: UInt64 = 0
    var late: UInt64 = 0
    var wrongSource: UInt64 = 0
    var malformed: UInt64 = 0
    var sendErrors: UInt64 = 0
    var latency = LatencyHistogram()

    mutating func merge(_ other: LoadTally) {
        sent &+= other.sent
        completed &+= other.completed
        lost &+= other.lost
        late &+= other.late
        wrongSource &+= other.wrongSource
        malformed &+= other.malformed
        sendErrors &+= other.sendErrors
        latency.merge(other.latency)
    }
}

/// The current `CLOCK_MONOTONIC` time in nanoseconds.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// One thread of the load generator: a set of `connect()`ed UDP sockets, each keeping a fixed window of requests
/// in flight, with a "catcher" socket per client socket that receives what the connected socket refuses.
///
/// A connected UDP socket only accepts datagrams whose source is exactly the address it connected to, as MIT
/// Kerberos clients' sockets do; a reply from any other address is what udpd exists to prevent. Each catcher is
/// bound with SO_REUSEADDR to its client socket's own address and port, and Linux delivers a datagram to the
/// connected socket when the source matches and to the unconnected catcher otherwise, so such replies are counted
/// (``LoadTally/wrongSource``) instead of vanishing. Their requests time out and count as lost as well.
///
/// Each request carries its slot, a sequence number and its send time; a reply completes its slot only when the
/// sequence number is the one outstanding, so a late answer to a request already given up is never counted twice.
///
/// Not `Sendable`: created, run and read on one thread.
final class LoadWorker {
    /// Bytes of a request that carry the slot, sequence number and send time.
    static let headerSize = 20
    private static let batch = 32
    private static let receiveBufferSize = 2048

    private let plan: LoadPlan
    private let clients: [SocketDescriptor]
    private let catchers: [SocketDescriptor]
    private var outstandingSequence: [UInt64]
    private var sentAt: [UInt64]
    private var nextSequence: UInt64 = 1
    private var sentInAll: UInt64 = 0
    private var tally = LoadTally()

    private let receiveBuffers: UnsafeMutableRawPointer
    private let receiveVectors: UnsafeMutablePointer<iovec>
    private let receiveHeaders: UnsafeMutablePointer<cudpd_mmsghdr>
    private let sendBuffers: UnsafeMutableRawPointer
    private let sendVectors: UnsafeMutablePointer<iovec>
    private let sendHeaders: UnsafeMutablePointer<cudpd_mmsghdr>
    private var sendSlots: [Int]

    /// Opens and connects the sockets of `plan`.
    init(plan: LoadPlan) throws {
        precondition(plan.payload >= Self.headerSize && plan.sockets > 0 && plan.windowPerSocket > 0)
        self.plan = plan
        var clients: [SocketDescriptor] = []
        var catchers: [SocketDescriptor] = []
        let type = CInt(SOCK_DGRAM.rawValue)
        for _ in 0..<plan.sockets {
            guard let anyPort = IPEndpoint(address: plan.source, port: 0) else {
                throw BenchmarkError("the source address \(plan.source) is not an IP address")
            }
            let catcher = try SocketDescriptor.open(family: plan.target.family, type: type, context: "catcher")
            try catcher.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR catcher")
            try catcher.bind(to: anyPort, context: "catcher")
            let local = try catcher.localEndpoint(context: "catcher")
            let client = try SocketDescriptor.open(family: plan.target.family, type: type, context: "client")
            try client.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR client")
            try client.bind(to: local, context: "client \(local)")
            let fd = client.rawValue
            _ = try plan.target.withSockAddr { (address, length) throws(SystemCallError) in
                try systemCall("connect", context: "client to \(plan.target)") { connect(fd, address, length) }
            }
            clients.append(client)
            catchers.append(catcher)
        }
        self.clients = clients
        self.catchers = catchers
        let slots = plan.sockets * plan.windowPerSocket
        outstandingSequence = [UInt64](repeating: 0, count: slots)
        sentAt = [UInt64](repeating: 0, count: slots)
        sendSlots = [Int](repeating: 0, count: Self.batch)

        receiveBuffers = .allocate(byteCount: Self.batch * Self.receiveBufferSize, alignment: 16)
        receiveVectors = .allocate(capacity: Self.batch)
        receiveHeaders = .allocate(capacity: Self.batch)
        sendBuffers = .allocate(byteCount: Self.batch * plan.payload, alignment: 16)
        sendBuffers.initializeMemory(as: UInt8.self, repeating: 0x5a, count: Self.batch * plan.payload)
        sendVectors = .allocate(capacity: Self.batch)
        sendHeaders = .allocate(capacity: Self.batch)
        receiveHeaders.initialize(repeating: cudpd_mmsghdr(), count: Self.batch)
        sendHeaders.initialize(repeating: cudpd_mmsghdr(), count: Self.batch)
        for index in 0..<Self.batch {
            receiveVectors[index] = iovec(
                iov_base: receiveBuffers + index * Self.receiveBufferSize,
                iov_len: Self.receiveBufferSize
            )
            receiveHeaders[index].msg_hdr.msg_iov = receiveVectors + index
            receiveHeaders[index].msg_hdr.msg_iovlen = 1
            sendVectors[index] = iovec(iov_base: sendBuffers + index * plan.payload, iov_len: plan.payload)
            sendHeaders[index].msg_hdr.msg_iov = sendVectors + index
            sendHeaders[index].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        receiveBuffers.deallocate()
        receiveVectors.deallocate()
        receiveHeaders.deallocate()
        sendBuffers.deallocate()
        sendVectors.deallocate()
        sendHeaders.deallocate()
        clients.forEach { $0.close() }
        catchers.forEach { $0.close() }
    }

    /// Runs the warm-up, the measured interval and the drain, and returns what the measured interval counted.
    func run() -> LoadTally {
        var pollSet = clients.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        pollSet += catchers.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        for socket in 0..<plan.sockets { refill(socket: socket, now: monotonicNanoseconds()) }
        var measuring = false
        var lastScan = monotonicNanoseconds()
        while true {
            let now = monotonicNanoseconds()
            if !measuring && now >= plan.measureStart {
                tally = LoadTally()
                measuring = true
            }
            if now >= plan.measureEnd { break }
            serve(&pollSet, refilling: true)
            if now &- lastScan >= 10_000_000 {
                // A fresh clock: requests sent while serving above are younger than `now`.
                scanTimeouts(now: monotonicNanoseconds())
                lastScan = now
            }
        }
        let drainEnd = plan.measureEnd &+ plan.drainNanoseconds
        while outstandingCount > 0 && monotonicNanoseconds() < drainEnd {
            serve(&pollSet, refilling: false)
        }
        tally.lost &+= UInt64(outstandingCount)
        return tally
    }

    private var outstandingCount: Int { outstandingSequence.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } }

    /// Waits up to a millisecond for replies and handles every socket that has some.
    private func serve(_ pollSet: inout [pollfd], refilling: Bool) {
        let ready = poll(&pollSet, nfds_t(pollSet.count), 1)
        guard ready > 0 else { return }
        for index in 0..<plan.sockets where pollSet[index].revents != 0 {
            pollSet[index].revents = 0
            receiveReplies(socket: index, refilling: refilling)
        }
        for index in 0..<plan.sockets where pollSet[plan.sockets + index].revents != 0 {
            pollSet[plan.sockets + index].revents = 0
            drainCatcher(index)
        }
    }

    /// Takes every reply waiting on a client socket and sends a new request for each completed slot.
    private func receiveReplies(socket: Int, refilling: Bool) {
        let fd = clients[socket].rawValue
        let window = plan.windowPerSocket
        while true {
            for index in 0..<Self.batch {
                receiveHeaders[index].msg_hdr.msg_namelen = 0
                receiveHeaders[index].msg_hdr.msg_controllen = 0
                receiveHeaders[index].msg_hdr.msg_flags = 0
            }
            let count = cudpd_recvmmsg(fd, receiveHeaders, UInt32(Self.batch), cudpd_msg_dontwait)
            guard count > 0 else { return }
            let now = monotonicNanoseconds()
            var refills = 0
            for index in 0..<Int(count) {
                let length = Int(receiveHeaders[index].msg_len)
                let bytes = UnsafeRawPointer(receiveBuffers + index * Self.receiveBufferSize + plan.replyPrefix)
                guard length == plan.replyPrefix + plan.payload else {
                    tally.malformed &+= 1
                    continue
                }
                let slot = Int(bytes.loadUnaligned(as: UInt32.self))
                let sequence = bytes.loadUnaligned(fromByteOffset: 4, as: UInt64.self)
                guard slot < window else {
                    tally.malformed &+= 1
                    continue
                }
                let flat = socket * window + slot
                guard sequence != 0, outstandingSequence[flat] == sequence else {
                    tally.late &+= 1
                    continue
                }
                let sentTime = bytes.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
                tally.latency.record(nanoseconds: now &- sentTime)
                tally.completed &+= 1
                outstandingSequence[flat] = 0
                if refilling {
                    sendSlots[refills] = slot
                    refills += 1
                }
            }
            if refills > 0 { send(socket: socket, slots: refills, now: now) }
            if count < Self.batch { return }
        }
    }

    /// Sends new requests on `socket` for every slot that has none outstanding.
    private func refill(socket: Int, now: UInt64) {
        var count = 0
        for slot in 0..<plan.windowPerSocket where outstandingSequence[socket * plan.windowPerSocket + slot] == 0 {
            sendSlots[count] = slot
            count += 1
            if count == Self.batch {
                send(socket: socket, slots: count, now: now)
                count = 0
            }
        }
        if count > 0 { send(socket: socket, slots: count, now: now) }
    }

    /// Writes and sends requests for the first `slots` entries of `sendSlots`.
    private func send(socket: Int, slots: Int, now: UInt64) {
        var count = 0
        for index in 0..<slots {
            guard sentInAll < plan.maximumRequests else { break }
            let slot = sendSlots[index]
            let sequence = nextSequence
            nextSequence &+= 1
            sentInAll &+= 1
            let buffer = sendBuffers + index * plan.payload
            buffer.storeBytes(of: UInt32(slot), as: UInt32.self)
            buffer.storeBytes(of: sequence, toByteOffset: 4, as: UInt64.self)
            buffer.storeBytes(of: now, toByteOffset: 12, as: UInt64.self)
            let flat = socket * plan.windowPerSocket + slot
            outstandingSequence[flat] = sequence
            sentAt[flat] = now
            count += 1
        }
        guard count > 0 else { return }
        let fd = clients[socket].rawValue
        var next = 0
        var delivered: UInt64 = 0
        while next < count {
            let sent = cudpd_sendmmsg(fd, sendHeaders + next, UInt32(count - next), cudpd_msg_dontwait)
            if sent <= 0 {
                // Refused (an ICMP error from an earlier datagram) or no buffer: the slot is sent again later.
                tally.sendErrors &+= 1
                outstandingSequence[socket * plan.windowPerSocket + sendSlots[next]] = 0
                next += 1
                continue
            }
            next += Int(sent)
            delivered &+= UInt64(sent)
        }
        tally.sent &+= delivered
    }

    /// Counts requests unanswered for too long as lost, and sends replacements (and requests that failed to go).
    private func scanTimeouts(now: UInt64) {
        for socket in 0..<plan.sockets {
            for slot in 0..<plan.windowPerSocket {
                let flat = socket * plan.windowPerSocket + slot
                let age = now > sentAt[flat] ? now - sentAt[flat] : 0
                if outstandingSequence[flat] != 0 && age > plan.requestTimeoutNanoseconds {
                    tally.lost &+= 1
                    outstandingSequence[flat] = 0
                }
            }
            refill(socket: socket, now: now)
        }
    }

    /// Counts and discards everything that reached a catcher: replies from a source the client did not connect to.
    private func drainCatcher(_ index: Int) {
        var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(
            of: &buffer,
            {
                recv(
                    catchers[index].rawValue,
                    $0.baseAddress,
                    $0.count,
                    cudpd_msg_dontwait
                )
            }
        ) >= 0 {
            tally.wrongSource &+= 1
        }
    }
}

/// A benchmark that could not run, with the reason.
struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
