import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The handler a listener currently runs; a reload swaps it in place while the socket and its worker stay.
///
/// `Sendable`: the handler is behind a mutex, and workers take it once per batch.
public final class DatagramHandlerSlot: Sendable {
    private let current: Mutex<any DatagramHandler>

    /// Creates a slot holding `handler`.
    public init(_ handler: any DatagramHandler) {
        current = Mutex(handler)
    }

    /// The handler now in place.
    public var handler: any DatagramHandler { current.withLock { $0 } }

    /// Puts `handler` in place; batches that already started finish with the old one.
    public func replace(with handler: any DatagramHandler) {
        current.withLock { $0 = handler }
    }
}

/// How a worker batches its I/O.
public struct UDPWorkerSettings: Sendable, Hashable {
    /// Datagrams taken per recvmmsg and answered per sendmmsg.
    public var batchSize: Int
    /// Bytes per datagram buffer; a larger datagram arrives truncated and is dropped.
    public var bufferSize: Int

    /// Creates settings; the defaults fit every UDP datagram.
    public init(batchSize: Int = 32, bufferSize: Int = 65_536) {
        self.batchSize = batchSize
        self.bufferSize = bufferSize
    }
}

/// A dedicated thread that serves one UDP listener socket: it receives in batches, asks the handler, and sends
/// every reply from the address its request was sent to.
///
/// `Sendable`: the thread handle is behind a mutex; everything else is immutable or itself `Sendable`.
public final class UDPWorker: Sendable {
    /// The socket served.
    public let socket: UDPListenerSocket
    private let wakeup: WakeupPipe
    private let thread: Mutex<WorkerThread?>

    /// Starts serving `socket` with the handler in `slot`.
    public init(
        socket: UDPListenerSocket,
        slot: DatagramHandlerSlot,
        counters: ListenerCounters,
        settings: UDPWorkerSettings = UDPWorkerSettings(),
        name: String
    ) throws(SystemCallError) {
        self.socket = socket
        let wakeup = try WakeupPipe()
        self.wakeup = wakeup
        let thread = try WorkerThread(name: name) {
            let loop = UDPWorkerLoop(socket: socket, slot: slot, counters: counters, wakeup: wakeup, settings: settings)
            loop.run()
        }
        self.thread = Mutex(thread)
    }

    /// Stops the thread after the batch in hand and waits for it; the socket stays open. Safe to call twice.
    public func stop() {
        wakeup.wake()
        let thread = self.thread.withLock { current -> WorkerThread? in
            let taken = current
            current = nil
            return taken
        }
        thread?.join()
    }
}

/// The loop itself; lives on the worker thread only.
private struct UDPWorkerLoop {
    let socket: UDPListenerSocket
    let slot: DatagramHandlerSlot
    let counters: ListenerCounters
    let wakeup: WakeupPipe
    let settings: UDPWorkerSettings

    func run() {
        let batch = DatagramBatch(capacity: settings.batchSize, bufferSize: settings.bufferSize)
        let replier = DatagramReplier(socket: socket, counters: counters)
        let fd = socket.descriptor.rawValue
        var useBatchCalls = true
        let pollSet = UnsafeMutablePointer<pollfd>.allocate(capacity: 2)
        defer { pollSet.deallocate() }
        while waitReadable(fd, pollSet) {
            while true {
                let received = receive(fd, batch, &useBatchCalls)
                guard received > 0 else { break }
                serve(batch, count: received, replier: replier)
                send(fd, batch, &useBatchCalls)
                batch.resetReceiveHeaders(count: received)
                if received < batch.capacity { break }
            }
        }
    }

    /// Blocks until the socket is readable (true) or the worker is told to stop (false).
    private func waitReadable(_ fd: CInt, _ fds: UnsafeMutablePointer<pollfd>) -> Bool {
        fds[0] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        fds[1] = pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)
        while true {
            guard (try? systemCall("poll") { poll(fds, 2, -1) }) != nil else { return false }
            if fds[1].revents != 0 { return false }
            if fds[0].revents & Int16(POLLNVAL) != 0 { return false }
            if fds[0].revents != 0 { return true }
        }
    }

    /// Receives up to a batch without blocking; 0 when nothing is waiting.
    private func receive(_ fd: CInt, _ batch: DatagramBatch, _ useBatchCalls: inout Bool) -> Int {
        if useBatchCalls {
            do {
                let count = try nonBlockingSystemCall("recvmmsg") {
                    cudpd_recvmmsg(fd, batch.receiveHeaders, UInt32(batch.capacity), cudpd_msg_dontwait)
                }
                return Int(count ?? 0)
            } catch where error.errno == ENOSYS {
                useBatchCalls = false
            } catch {
                return 0
            }
        }
        let header = batch.receiveHeaders
        guard let length = try? nonBlockingSystemCall("recvmsg", { recvmsg(fd, &header.pointee.msg_hdr, cudpd_msg_dontwait) })
        else { return 0 }
        header.pointee.msg_len = UInt32(length)
        return 1
    }

    /// Asks the handler about each received datagram and queues the replies.
    private func serve(_ batch: DatagramBatch, count: Int, replier: DatagramReplier) {
        let handler = slot.handler
        let replySource = socket.replySource
        let localEndpoint = socket.localEndpoint
        var receivedBytes: UInt64 = 0
        for index in 0..<count {
            let header = batch.receiveHeaders + index
            let length = Int(header.pointee.msg_len)
            receivedBytes &+= UInt64(length)
            if header.pointee.msg_hdr.msg_flags & cudpd_msg_trunc != 0 {
                counters.addDrop(.truncated)
                continue
            }
            guard let peer = batch.peer(index) else { continue }
            let destination: DatagramDestination
            switch replySource {
            case .pktinfo, .recvdstaddr:
                guard let read = DestinationControlMessage.read(from: &header.pointee.msg_hdr,
                                                                  localPort: localEndpoint.port)
                else {
                    counters.addDrop(.noDestination)
                    continue
                }
                destination = read
            case .bound, .kernel, .connection:
                destination = DatagramDestination(endpoint: localEndpoint, interfaceIndex: 0)
            }
            let verdict = handler.handle(batch.buffer(index), length: length, peer: peer, destination: destination,
                                         replier: replier)
            switch verdict {
            case .reply(let replyLength):
                batch.queueReply(slot: index, length: min(replyLength, batch.bufferSize), source: destination,
                                 replySource: replySource)
            case .noReply:
                break
            case .drop(let reason):
                counters.addDrop(reason)
            }
        }
        counters.countReceived(packets: UInt64(count), bytes: receivedBytes)
    }

    /// Sends the queued replies; one that the kernel refuses is counted and skipped.
    private func send(_ fd: CInt, _ batch: DatagramBatch, _ useBatchCalls: inout Bool) {
        let total = batch.pendingReplies
        var next = 0
        var sentPackets: UInt64 = 0
        var sentBytes: UInt64 = 0
        while next < total {
            var sent = 0
            if useBatchCalls {
                sent = (try? systemCall("sendmmsg") {
                    cudpd_sendmmsg(fd, batch.sendHeaders + next, UInt32(total - next), 0)
                }).map(Int.init) ?? -1
            } else {
                let header = batch.sendHeaders + next
                sent = (try? systemCall("sendmsg") { sendmsg(fd, &header.pointee.msg_hdr, 0) }) != nil ? 1 : -1
            }
            if sent <= 0 {
                counters.addDrop(.sendError)
                next += 1
                continue
            }
            for index in next..<(next + sent) { sentBytes &+= UInt64(batch.replyLength(index)) }
            sentPackets &+= UInt64(sent)
            next += sent
        }
        batch.clearReplies()
        if sentPackets > 0 { counters.countSent(packets: sentPackets, bytes: sentBytes) }
    }
}
