import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The client's side of the control socket: one blocking request and its response, for `udpctl`.
///
/// No event loop is involved: the client connects, writes one line, and polls for the answer until a deadline.
public enum ControlClient {
    /// The longest response accepted (metrics for very many services are still far below it).
    public static let maximumResponseSize = 64 * 1024 * 1024

    /// The default time to wait for an answer: 30 seconds for `reload` (the daemon binds and closes sockets
    /// first), 5 seconds otherwise.
    public static func defaultTimeout(for command: ControlCommand) -> Duration {
        switch command {
        case .reload: .seconds(30)
        case .upgrade: .seconds(60)
        case .status, .metrics: .seconds(5)
        }
    }

    /// Sends `request` to the daemon listening on `path` and returns its response.
    ///
    /// Nothing is sent unless the path is safe, as OpenSSH's `StrictModes` checks it: every directory from `/` down to
    /// the socket, and the socket file, belongs to root, to the caller or to the user the answering daemon runs as,
    /// and no directory is writable by group or others unless it is sticky (see
    /// ``ControlSocketPath/firstUnsafeComponent(ofSocket:trustedOwners:)``). Otherwise whoever may write there could
    /// have swapped the socket and would answer in the daemon's name.
    ///
    /// - Parameters:
    ///   - request: what to ask.
    ///   - path: the control socket's path.
    ///   - timeout: how long to wait for the whole exchange after connecting.
    /// - Throws: ``ControlClientError``; ``ControlClientError/isUnreachable`` tells whether any daemon answered.
    public static func send(
        _ request: ControlRequest,
        to path: String,
        timeout: Duration
    ) throws(ControlClientError) -> ControlResponse {
        let line: [UInt8]
        do {
            line = try ControlProtocol.encodeLine(request)
        } catch {
            throw ControlClientError(.invalidResponse, path: path, detail: "cannot encode the request: \(error)")
        }
        let fd = try openConnection(to: path)
        defer { closeDescriptor(fd) }
        if let unsafe = ControlSocketPath.firstUnsafeComponent(ofSocket: path, trustedOwners: trustedOwners(of: fd)) {
            throw ControlClientError(.unsafePath, path: path, detail: unsafe.description)
        }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let exchange = Exchange(fd: fd, path: path, deadline: deadline, timeout: timeout)
        try exchange.write(line)
        let answer = try exchange.readLine()
        do {
            return try ControlProtocol.decodeResponse(answer)
        } catch {
            throw ControlClientError(.invalidResponse, path: path, detail: error.description)
        }
    }

    /// The users whose files on the way to the socket are trusted: the caller, and the user the process answering on
    /// `fd` runs as now (it listened as that user, or as root before dropping to it; that user could stop the daemon
    /// anyway). Root is always trusted.
    private static func trustedOwners(of fd: Int32) -> Set<UInt32> {
        var trusted: Set<UInt32> = [UInt32(geteuid())]
        #if canImport(Glibc) || canImport(Musl)
        var credentials = LinuxPeerCredentials()
        var length = socklen_t(MemoryLayout<LinuxPeerCredentials>.size)
        let asked = try? systemCall("getsockopt", context: "SO_PEERCRED") {
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        }
        guard asked != nil else { return trusted }
        trusted.insert(credentials.uid)
        if credentials.pid > 0, let uid = effectiveUID(ofProcess: credentials.pid) { trusted.insert(uid) }
        #endif
        return trusted
    }

    /// The effective uid of process `pid`, from the `Uid:` line of `/proc/PID/status` (real, effective, saved, fs).
    private static func effectiveUID(ofProcess pid: Int32) -> UInt32? {
        guard let file = fopen("/proc/\(pid)/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("Uid:") else { continue }
            let fields = text.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            return fields.count >= 2 ? UInt32(fields[1]) : nil
        }
        return nil
    }

    /// Opens a socket connected to `path`.
    private static func openConnection(to path: String) throws(ControlClientError) -> Int32 {
        let fd: Int32
        do {
            fd = try makeUnixStreamSocket(context: path)
        } catch {
            throw ControlClientError(.unreachable, path: path, systemError: error)
        }
        do {
            #if canImport(Darwin)
            var one: Int32 = 1
            try systemCall("setsockopt", context: path) {
                setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            #endif
            let connected = try withUnixSocketAddress(path) { (address, length) throws(SystemCallError) in
                try systemCall("connect", context: path) { connect(fd, address, length) }
            }
            guard connected != nil else {
                closeDescriptor(fd)
                let limit = maximumUnixSocketPathLength
                throw ControlClientError(.unreachable, path: path, detail: "the path is longer than \(limit) bytes")
            }
            return fd
        } catch let error as ControlClientError {
            throw error
        } catch {
            closeDescriptor(fd)
            throw ControlClientError(.unreachable, path: path, systemError: error as? SystemCallError)
        }
    }
}

/// One request's writes and reads on a connected socket, bounded by a deadline.
private struct Exchange {
    let fd: Int32
    let path: String
    let deadline: ContinuousClock.Instant
    let timeout: Duration

    /// Writes all of `bytes`.
    func write(_ bytes: [UInt8]) throws(ControlClientError) {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT))
            let written: Int
            do {
                written = try bytes.withUnsafeBytes { (raw) throws(SystemCallError) -> Int in
                    try systemCall("send", context: path) {
                        sendBytes(fd, raw.baseAddress! + offset, raw.count - offset)
                    }
                }
            } catch {
                throw ControlClientError(.connectionLost, path: path, systemError: error as? SystemCallError)
            }
            offset += written
        }
    }

    /// Reads up to and without the first newline.
    func readLine() throws(ControlClientError) -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            try wait(for: Int16(POLLIN))
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { (raw) throws(SystemCallError) -> Int in
                    try systemCall("read", context: path) { read(fd, raw.baseAddress!, raw.count) }
                }
            } catch {
                throw ControlClientError(.connectionLost, path: path, systemError: error as? SystemCallError)
            }
            guard count > 0 else {
                throw ControlClientError(.connectionLost, path: path, detail: "the daemon closed the connection")
            }
            let searchFrom = received.count
            received.append(contentsOf: chunk[0..<count])
            if let newline = received[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                return Array(received[..<newline])
            }
            guard received.count <= ControlClient.maximumResponseSize else {
                throw ControlClientError(
                    .invalidResponse,
                    path: path,
                    detail: "no end of line within \(ControlClient.maximumResponseSize) bytes"
                )
            }
        }
    }

    /// Polls until `events` are ready on the socket, or throws once the deadline has passed.
    private func wait(for events: Int16) throws(ControlClientError) {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else {
                throw ControlClientError(.timedOut, path: path, detail: "\(timeout)")
            }
            let milliseconds = Int32(clamping: min(remaining.saturatingMilliseconds, Int64(Int32.max) - 1) + 1)
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let ready: Int32
            do {
                ready = try systemCall("poll", context: path) { poll(&descriptor, 1, milliseconds) }
            } catch {
                throw ControlClientError(.connectionLost, path: path, systemError: error)
            }
            if ready > 0 { return }
        }
    }
}

/// `send(2)` without `SIGPIPE` when the daemon has gone away (Darwin uses `SO_NOSIGPIPE` instead).
private func sendBytes(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return send(fd, pointer, count, Int32(MSG_NOSIGNAL))
    #elseif canImport(Musl)
    return send(fd, pointer, count, MSG_NOSIGNAL)
    #else
    return send(fd, pointer, count, 0)
    #endif
}
