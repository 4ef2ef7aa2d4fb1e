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

/// The batch size of a pool's worker threads, which a reload may change while they run: each thread takes the new
/// value at its next wake-up, between two passes, when it has nothing queued.
///
/// `Sendable`: an atomic.
final class BatchSizeSetting: Sendable {
    private let value: Atomic<Int>

    init(_ size: Int) {
        value = Atomic(size)
    }

    /// The size threads use from their next pass.
    var current: Int { value.load(ordering: .relaxed) }

    func set(_ size: Int) {
        value.store(size, ordering: .relaxed)
    }
}
