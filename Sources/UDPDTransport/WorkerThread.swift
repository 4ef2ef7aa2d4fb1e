import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A dedicated OS thread for blocking socket work, which must never run on Swift's cooperative pool.
///
/// `@unchecked Sendable`: the handle never changes after `init`, and ``join()`` must be called once, which every
/// owner guarantees by taking the thread out of a mutex before joining it.
final class WorkerThread: @unchecked Sendable {
    #if canImport(Darwin)
    private var handle: pthread_t?
    #else
    private var handle: pthread_t = pthread_t()
    #endif

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread named `name` (names are cut to the 15 bytes Linux keeps).
    init(name: String, body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let threadName = String(name.utf8.prefix(15)) ?? "udpd-worker"
        let box = Unmanaged.passRetained(
            Box {
                _ = threadName.withCString { cudpd_pthread_setname($0) }
                body()
            }
        ).toOpaque()
        let result = pthread_create(
            &handle,
            nil,
            { argument in
                #if canImport(Darwin)
                let box = Unmanaged<Box>.fromOpaque(argument).takeRetainedValue()
                #else
                let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
                #endif
                box.body()
                return nil
            },
            box
        )
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemCallError(call: "pthread_create", errno: result, context: name)
        }
    }

    /// Waits for the thread to finish. Call once.
    func join() {
        #if canImport(Darwin)
        if let handle { pthread_join(handle, nil) }
        #else
        pthread_join(handle, nil)
        #endif
    }
}

/// A pipe whose only purpose is to wake a thread blocked in `poll`.
///
/// `Sendable`: the descriptors never change; writing one byte is the whole protocol.
final class WakeupPipe: Sendable {
    let readDescriptor: CInt
    let writeDescriptor: CInt

    init() throws(SystemCallError) {
        (readDescriptor, writeDescriptor) = try makeNonBlockingPipe()
    }

    /// Wakes the thread; safe to call more than once and from any thread.
    func wake() {
        var byte: UInt8 = 1
        _ = write(writeDescriptor, &byte, 1)
    }

    deinit {
        close(readDescriptor)
        close(writeDescriptor)
    }
}
