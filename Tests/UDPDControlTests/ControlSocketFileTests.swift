import Foundation
import Logging
import NIOPosix
import Testing
import UDPDControl
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("The control socket file")
struct ControlSocketFileTests {
    private static func bindServer(_ path: String, mode: UInt32 = 0o600) async throws -> ControlServer {
        try await ControlServer.bind(
            path: path,
            mode: mode,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "udpd.control.test")
        )
    }

    private static func fileMode(_ path: String) throws -> UInt32 {
        var status = stat()
        try systemCall("lstat") { lstat(path, &status) }
        return UInt32(status.st_mode) & 0o7777
    }

    @Test("the socket is 0600 by default and removed when the server stops")
    func defaultMode() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("control.sock")
        try await withControlServer(path: path) { path in
            let mode = try Self.fileMode(path)
            #expect(mode == 0o600)
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a given mode is honoured")
    func givenMode() async throws {
        try await withControlServer(mode: 0o660) { path in
            let mode = try Self.fileMode(path)
            #expect(mode == 0o660)
        }
    }

    @Test("missing directories are created")
    func createsDirectory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("a/b/control.sock")
        try await withControlServer(path: path) { path in
            let response = try await send(ControlRequest(command: .status), to: path)
            #expect(response.ok)
        }
        #expect(try Self.fileMode(directory.file("a/b")) == 0o700)
    }

    @Test("a stale socket file is replaced")
    func staleSocket() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("control.sock")
        let stale = try Self.makeStaleSocket(path)
        close(stale)
        #expect(FileManager.default.fileExists(atPath: path))
        try await withControlServer(path: path) { path in
            let response = try await send(ControlRequest(command: .status), to: path)
            #expect(response.ok)
        }
    }

    @Test("a second server on a live path is refused, and the first keeps its socket")
    func alreadyRunning() async throws {
        try await withControlServer { path in
            await #expect {
                _ = try await Self.bindServer(path)
            } throws: { error in
                guard let error = error as? ControlServerError else { return false }
                return error.code == .alreadyRunning && error.path == path
            }
            let response = try await send(ControlRequest(command: .status), to: path)
            #expect(response.ok)
        }
    }

    @Test("a regular file at the path is left alone")
    func regularFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("control.sock")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        await #expect {
            _ = try await Self.bindServer(path)
        } throws: { error in
            (error as? ControlServerError)?.code == .notASocket
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
    }

    @Test("a path too long for sockaddr_un is refused up front")
    func pathTooLong() async throws {
        let path = "/tmp/" + String(repeating: "x", count: 120) + "/control.sock"
        await #expect {
            _ = try await Self.bindServer(path)
        } throws: { error in
            (error as? ControlServerError)?.code == .pathTooLong
        }
    }

    @Test("the default path follows the effective user")
    func defaultPath() {
        let path = ControlSocketPath.defaultPath()
        if geteuid() == 0 {
            #expect(path == "/run/udpd/control.sock")
        } else {
            #expect(path.hasSuffix("/udpd/control.sock") || path == "/tmp/udpd-\(geteuid())/control.sock")
        }
    }

    /// Binds and listens on `path` with a raw socket, leaving the file behind when closed: a crashed daemon's socket.
    private static func makeStaleSocket(_ path: String) throws -> Int32 {
        let fd = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        _ = try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                try systemCall("bind") { bind(fd, raw, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        try systemCall("listen") { listen(fd, 1) }
        return fd
    }
}
