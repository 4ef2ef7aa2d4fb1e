import Foundation
import Logging
import NIOPosix
import UDPDControl
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under /tmp (short, so socket paths fit in `sockaddr_un`), removed by `remove()`.
struct TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/udpdctl-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SystemCallError(call: "mkdtemp", errno: errno) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A status report with two services, one of them with a `kernel` reply source.
let sampleReport = StatusReport(
    generation: 3,
    config: "/etc/udpd/services.yaml",
    pid: 4242,
    version: "0.1.0",
    startedAt: "2026-11-26T09:00:00Z",
    uptimeSeconds: 11_530.25,
    lastReload: nil,
    services: [
        ServiceStatus(
            name: "echo",
            handler: "echo",
            listeners: [
                ListenerStatus(proto: "udp", address: "0.0.0.0", port: 7, replySource: "pktinfo"),
                ListenerStatus(proto: "udp", address: "::1", port: 7, replySource: "kernel"),
                ListenerStatus(proto: "tcp", address: "0.0.0.0", port: 7, replySource: "connection"),
            ],
            counters: ServiceCounters(
                rxPackets: 120,
                txPackets: 118,
                rxBytes: 9600,
                txBytes: 9440,
                dropped: 2,
                tcpAccepted: 5,
                tcpActive: 1,
                tcpClosed: 4,
                drops: ["reflection": 1, "truncated": 1]
            )
        ),
        ServiceStatus(
            name: "sink",
            handler: "discard",
            listeners: [ListenerStatus(proto: "udp", address: "127.0.0.1", port: 9, replySource: "bound")],
            counters: ServiceCounters(rxPackets: 7, rxBytes: 700)
        ),
    ]
)

/// Answers status with ``sampleReport``, metrics with a fixed text, reload with generation 4, upgrade with pid 4242.
@Sendable
func sampleHandler(_ request: ControlRequest, _ peer: ControlPeer) async -> ControlResponse {
    switch request.command {
    case .status: ControlResponse(ok: true, status: sampleReport)
    case .metrics: ControlResponse(ok: true, metrics: "udpd_generation 3\n")
    case .reload: ControlResponse(ok: true, reload: ReloadReport(ok: true, generation: 4))
    case .upgrade: ControlResponse(ok: true, upgrade: UpgradeReport(pid: 4242, previousPID: 42))
    }
}

/// Binds a server at `path` (default: a fresh temporary path), runs it in a child task while `body` runs, then
/// cancels it and waits for it to finish.
func withControlServer(
    path: String? = nil,
    mode: UInt32 = 0o600,
    handler: @escaping @Sendable (ControlRequest, ControlPeer) async -> ControlResponse = sampleHandler,
    _ body: @Sendable (String) async throws -> Void
) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let socketPath = path ?? directory.file("control.sock")
    let server = try await ControlServer.bind(
        path: socketPath,
        mode: mode,
        group: MultiThreadedEventLoopGroup.singleton,
        logger: Logger(label: "udpd.control.test")
    )
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run(handler: handler) }
        do {
            try await body(socketPath)
        } catch {
            group.cancelAll()
            throw error
        }
        group.cancelAll()
        try await group.waitForAll()
    }
}

/// Runs blocking `work` on its own thread, so blocking clients never occupy the cooperative pool the server's
/// handlers need.
func onThread<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Swift.Result(catching: work)) }
        thread.start()
    }
}

/// Sends `request` with ``ControlClient`` on its own thread.
func send(
    _ request: ControlRequest,
    to path: String,
    timeout: Duration = .seconds(5)
) async throws -> ControlResponse {
    try await onThread { try ControlClient.send(request, to: path, timeout: timeout) }
}

/// A bare, blocking connection for sending arbitrary bytes.
final class RawConnection: @unchecked Sendable {  // used by one thread at a time, in sequence
    let fd: Int32

    init(path: String) throws {
        fd = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let fd = self.fd
        _ = try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                try systemCall("connect") { connect(fd, raw, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
    }

    deinit { close(fd) }

    func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            offset += try bytes.withUnsafeBytes { raw in
                try systemCall("send") { send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// Shuts down the sending side, as `socat` does after its input ends.
    func shutdownWrite() throws {
        try systemCall("shutdown") { shutdown(fd, Int32(SHUT_WR)) }
    }

    /// The next line without its newline, or `nil` at end of stream; throws after `timeout` seconds of silence.
    func readLine(timeout: Int32 = 10) throws -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard try systemCall("poll", { poll(&descriptor, 1, timeout * 1000) }) > 0 else {
                throw SystemCallError(call: "poll", errno: ETIMEDOUT)
            }
            let count = try systemCall("read") { read(fd, &byte, 1) }
            if count == 0 { return line.isEmpty ? nil : String(decoding: line, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }

    /// Reads until end of stream, returning whether it came (rather than a timeout or a reset).
    func readsEndOfStream(timeout: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard (try? systemCall("poll", { poll(&descriptor, 1, timeout * 1000) })) ?? 0 > 0 else { return false }
            guard let count = try? systemCall("read", { read(fd, &buffer, buffer.count) }) else { return true }
            if count == 0 { return true }
        }
    }
}
