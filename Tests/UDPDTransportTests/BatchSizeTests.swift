import Synchronization
import Testing
import UDPDTestSupport
import UDPDTransport

/// Records which slot buffers a worker handed it: a batch of N datagrams uses N distinct slots.
private final class SlotRecorder: DatagramHandler {
    private let seen = Mutex<(datagrams: Int, slots: Set<UInt>)>((0, []))

    func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        let slot = UInt(bitPattern: buffer.baseAddress)
        seen.withLock {
            $0.datagrams += 1
            $0.slots.insert(slot)
        }
        return .noReply
    }

    var datagrams: Int { seen.withLock { $0.datagrams } }
    var slots: Int { seen.withLock { $0.slots.count } }
    func reset() { seen.withLock { $0 = (0, []) } }
}

@Suite("batch size")
struct BatchSizeTests {
    @Test("a worker takes at most batch-size datagrams per call, and a new size reaches the running thread")
    func batchSizeBoundsEachCallAndChangesLive() throws {
        let socket = try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!)
        defer { socket.close() }
        let pool = try UDPWorkerPool(threadCount: 1, settings: UDPWorkerSettings(batchSize: 4))
        defer { pool.shutdown() }
        let recorder = SlotRecorder()
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: socket.localEndpoint)
        let queued = 40

        // The datagrams wait in the socket before the worker serves it, so every call finds more than a batch.
        for (size, change) in [(4, false), (16, true), (1, true)] {
            if change { pool.setBatchSize(size) }
            #expect(pool.batchSize == size)
            recorder.reset()
            for index in 0..<queued { try client.send("datagram \(index)") }
            let registration = try pool.add([socket], slot: DatagramHandlerSlot(recorder), counters: ListenerCounters())
            #expect(eventually { recorder.datagrams == queued }, "\(recorder.datagrams) of \(queued) at size \(size)")
            pool.remove(registration)
            #expect(recorder.slots == size, "batch size \(size) used \(recorder.slots) slots")
        }
    }
}
