import Synchronization
import Testing
import UDPDTransport

@testable import UDPDServices

@Suite("The stream handler slot")
struct StreamHandlerSlotTests {
    /// Each accepted connection asks the slot for its handlers. The factory used to sit in a tuple inside the
    /// mutex and grew by a reabstraction thunk per call, until calling it overflowed the stack (udpd crashed after
    /// some 60,000 TCP connections, and its resident memory grew by ~250 bytes per connection before that).
    @Test("asking for handlers 300,000 times neither grows the factory nor overflows the stack")
    func manyConnections() {
        let calls = Counter()
        let slot = StreamHandlerSlot({ _ in
            calls.increment()
            return [DiscardStreamHandler()]
        })
        let counters = ListenerCounters()
        var handlers = 0
        for _ in 0..<300_000 { handlers += slot.makeHandlers(counters: counters).count }
        #expect(handlers == 300_000)
        #expect(calls.value == 300_000)
    }
}

/// A call counter the `@Sendable` factory can bump.
///
/// `Sendable`: the count is atomic.
private final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
}
