import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The identity of a file, so the server removes its socket at shutdown only if nobody replaced it meanwhile.
struct SocketFileIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
}

/// The file-system side of the control socket: its directory, a stale or live predecessor, its mode.
enum SocketFile {
    /// `S_IFMT` and `S_IFSOCK`, the same on Linux and the BSDs; spelled out because not every libc module exports them.
    private static let fileTypeMask: UInt32 = 0o170000
    private static let socketFileType: UInt32 = 0o140000

    /// Makes `path` ready to bind: the directory exists, no live daemon answers there, and no stale socket is in the
    /// way.
    static func prepare(_ path: String) throws(ControlServerError) {
        guard Array(path.utf8).count <= maximumUnixSocketPathLength else {
            throw ControlServerError(
                .pathTooLong,
                path: path,
                detail: "at most \(maximumUnixSocketPathLength) bytes fit in a Unix socket address"
            )
        }
        try createDirectory(parent(of: path))
        guard let status = try fileStatus(path, code: .staleSocket) else { return }
        guard UInt32(status.st_mode) & fileTypeMask == socketFileType else {
            throw ControlServerError(.notASocket, path: path)
        }
        if try isAnswering(path) { throw .alreadyRunning(path) }
        do {
            try systemCall("unlink", context: path) { unlink(path) }
        } catch  where error.errno == ENOENT {
            return
        } catch {
            throw ControlServerError(.staleSocket, path: path, systemError: error)
        }
    }

    /// Sets the socket file's permission bits and returns its identity.
    static func finish(_ path: String, mode: UInt32) throws(ControlServerError) -> SocketFileIdentity {
        do {
            try systemCall("chmod", context: path) { chmod(path, mode_t(mode)) }
        } catch {
            throw ControlServerError(.permissions, path: path, systemError: error)
        }
        guard let identity = identity(of: path) else {
            throw ControlServerError(.bind, path: path, detail: "the socket file vanished right after bind")
        }
        return identity
    }

    /// The identity of the file at `path`, or `nil` when there is none.
    static func identity(of path: String) -> SocketFileIdentity? {
        guard let status = try? fileStatus(path, code: .staleSocket) else { return nil }
        return SocketFileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }

    /// Removes the socket file if it is still the one identified by `identity`.
    static func remove(_ path: String, ifStill identity: SocketFileIdentity) {
        guard self.identity(of: path) == identity else { return }
        _ = try? systemCall("unlink", context: path) { unlink(path) }
    }

    /// Whether a process accepts connections on the socket at `path`: a stale socket refuses them.
    private static func isAnswering(_ path: String) throws(ControlServerError) -> Bool {
        let fd: Int32
        do {
            fd = try makeUnixStreamSocket(context: path)
        } catch {
            throw ControlServerError(.staleSocket, path: path, systemError: error)
        }
        defer { closeDescriptor(fd) }
        do {
            _ = try withUnixSocketAddress(path) { (address, length) throws(SystemCallError) in
                try systemCall("connect", context: path) { connect(fd, address, length) }
            }
            return true
        } catch  where error.errno == ECONNREFUSED || error.errno == ENOENT {
            return false
        } catch {
            throw ControlServerError(.staleSocket, path: path, systemError: error)
        }
    }

    /// The directory part of `path` (`.` for a bare name).
    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// Creates `directory` and its missing parents.
    ///
    /// Directories created inside `$XDG_RUNTIME_DIR` or `/tmp` get mode 0700: they are one user's, and in `/tmp`
    /// anybody could otherwise get in the way. Elsewhere (`/run/udpd`) they get 0755 so that `control.mode` alone
    /// decides who may connect. An existing directory under `/tmp` must belong to us and not be writable by others.
    private static func createDirectory(_ directory: String) throws(ControlServerError) {
        if let status = try fileStatus(directory, code: .directory) {
            try checkPrivate(directory, status)
            return
        }
        let above = parent(of: directory)
        if above != directory { try createDirectory(above) }
        let mode: mode_t = isPerUser(directory) ? 0o700 : 0o755
        do {
            try systemCall("mkdir", context: directory) { mkdir(directory, mode) }
        } catch  where error.errno == EEXIST {
            return
        } catch {
            throw ControlServerError(.directory, path: directory, systemError: error)
        }
    }

    /// Refuses a directory in `/tmp` that someone else owns or may write to: they could swap the socket.
    private static func checkPrivate(_ directory: String, _ status: stat) throws(ControlServerError) {
        guard directory.hasPrefix("/tmp/") else { return }
        if status.st_uid != geteuid() {
            throw ControlServerError(.directory, path: directory, detail: "it belongs to uid \(status.st_uid)")
        }
        if UInt32(status.st_mode) & 0o022 != 0 {
            throw ControlServerError(.directory, path: directory, detail: "others may write to it")
        }
    }

    /// Whether `directory` lies in a per-user area.
    private static func isPerUser(_ directory: String) -> Bool {
        if directory.hasPrefix("/tmp/") { return true }
        guard let runtime = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !runtime.isEmpty else {
            return false
        }
        return directory.hasPrefix(runtime.hasSuffix("/") ? runtime : runtime + "/")
    }

    /// `lstat(2)` of `path`, or `nil` when nothing is there.
    private static func fileStatus(_ path: String, code: ControlServerError.Code) throws(ControlServerError) -> stat? {
        var status = stat()
        do {
            try systemCall("lstat", context: path) { lstat(path, &status) }
            return status
        } catch  where error.errno == ENOENT {
            return nil
        } catch {
            throw ControlServerError(code, path: path, systemError: error)
        }
    }
}
