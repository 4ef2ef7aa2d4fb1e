import Dispatch
import Testing
import UDPDTestSupport
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// One owner per descriptor (issue 14, item 1): a socket is closed only when no worker uses it, so a send or
/// receive never reaches a descriptor number that was closed and already names another socket.
@Suite("descriptor ownership: nothing closes a socket under a worker", .serialized)
struct DescriptorOwnershipTests {
    /// Whether `fd` names an open descriptor now.
    static func isOpen(_ fd: CInt) -> Bool { fcntl(fd, F_GETFD) != -1 }

    @Test("close() during a use defers the close to the end of the use, and no new use starts")
    func closeWaitsForTheUse() throws {
        let socket = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_DGRAM.rawValue), context: "test")
        let fd = socket.rawValue
        let inside: Bool? = socket.withDescriptor { held in
            socket.close()
            let second: Void? = socket.withDescriptor { _ in }
            return held == fd && Self.isOpen(fd) && socket.isClosed && second == nil
        }
        #expect(inside == true)
        #expect(!Self.isOpen(fd), "the last use did not close the descriptor")
        let after: Void? = socket.withDescriptor { _ in }
        #expect(after == nil)
    }

    /// Answers after the test lets it: a handler that holds its worker far past the pool's 2 s wait.
    final class HeldEcho: DatagramHandler {
        let entered = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)

        func handle(
            _ buffer: UnsafeMutableRawBufferPointer,
            length: Int,
            peer: IPEndpoint,
            destination: DatagramDestination,
            replier: DatagramReplier
        ) -> DatagramVerdict {
            entered.signal()
            _ = proceed.wait(timeout: .now() + 20)
            return .reply(length: length)
        }
    }

    @Test("a listener closed while its worker is in a pass stays open until the pass ends; its number is not reused")
    func listenerClosedUnderAWorker() throws {
        let socket = try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!)
        let fd = socket.descriptor.rawValue
        let pool = try UDPWorkerPool(threadCount: 1)
        defer { pool.shutdown() }
        let handler = HeldEcho()
        let registration = try pool.add([socket], slot: DatagramHandlerSlot(handler), counters: ListenerCounters())
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: socket.localEndpoint.port)!,
            timeoutMilliseconds: 5000
        )
        try client.send("held")
        #expect(handler.entered.wait(timeout: .now() + 5) == .success)

        // What a reload does to a removed listener: the pool gives up waiting for the worker after 2 s, the owner
        // closes the socket.
        pool.remove(registration)
        socket.close()
        #expect(socket.descriptor.isClosed)
        #expect(Self.isOpen(fd), "closed under a worker that is still using it")
        let newcomer = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_DGRAM.rawValue), context: "newcomer")
        #expect(newcomer.rawValue != fd, "a new socket took the number of one a worker still uses")

        handler.proceed.signal()
        // The pass ends: its reply goes out on the socket it was for, which then closes.
        #expect(client.receiveText() == "held")
        #expect(eventually(timeout: .seconds(2)) { !Self.isOpen(fd) }, "the last use did not close it")
        newcomer.close()
    }
}
