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

/// What became of the socket file when the server stopped.
enum SocketFileRemoval: Sendable, Equatable, CustomStringConvertible {
    /// It was removed.
    case removed
    /// Another file sits at the path now (a newer daemon's socket): it was left alone.
    case replaced
    /// Removing it failed; it was left behind.
    case failed(SystemCallError)

    /// `removed`, `left alone: another file took its place`, `left behind: unlink ...: Permission denied`.
    var description: String {
        switch self {
        case .removed: "removed"
        case .replaced: "left alone: another file took its place"
        case .failed(let error): "left behind: \(error)"
        }
    }
}

/// The file-system side of the control socket: its directory, a stale or live predecessor, its mode.
enum SocketFile {
    /// `S_IFMT` and `S_IFSOCK`, the same on Linux and the BSDs; spelled out because not every libc module exports them.
    private static let fileTypeMask: UInt32 = 0o170000
    private static let socketFileType: UInt32 = 0o140000

    /// Makes `path` ready to bind: the directory exists, every directory from `/` down to it is safe (see
    /// ``ControlSocketPath/firstUnsafeComponent(ofDirectory:trustedOwners:)``), no live daemon answers there, and no
    /// stale socket is in the way.
    ///
    /// - Parameter runAs: the user udpd runs as once it has dropped privileges: directories may belong to them, and
    ///   the socket's directory, when udpd creates it, is theirs, so that they can remove the socket at exit.
    static func prepare(_ path: String, runAs: ProcessIdentity?) throws(ControlServerError) {
        guard Array(path.utf8).count <= maximumUnixSocketPathLength else {
            throw ControlServerError(
                .pathTooLong,
                path: path,
                detail: "at most \(maximumUnixSocketPathLength) bytes fit in a Unix socket address"
            )
        }
        var trusted: Set<UInt32> = [UInt32(geteuid())]
        if let runAs { trusted.insert(runAs.uid) }
        let directory = parent(of: path)
        try createDirectory(directory, owner: runAs, trusted: trusted, isSocketDirectory: true)
        if let unsafe = ControlSocketPath.firstUnsafeComponent(ofDirectory: directory, trustedOwners: trusted) {
            throw ControlServerError(.unsafePath, path: unsafe.component, detail: unsafe.reason)
        }
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

    /// Removes the socket file if it is still the one identified by `identity`, and says what became of it.
    @discardableResult
    static func remove(_ path: String, ifStill identity: SocketFileIdentity) -> SocketFileRemoval {
        guard self.identity(of: path) == identity else { return .replaced }
        do {
            try systemCall("unlink", context: path) { unlink(path) }
            return .removed
        } catch {
            return .failed(error)
        }
    }

    /// The owner of the socket's directory, when it can be read.
    static func directoryOwner(of path: String) -> UInt32? {
        guard let status = try? fileStatus(parent(of: path), code: .directory) else { return nil }
        return UInt32(status.st_uid)
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

    /// Creates `directory` and its missing parents, after checking the deepest one that exists (and every one above
    /// it) with ``ControlSocketPath/firstUnsafeComponent(ofDirectory:trustedOwners:)``: nothing is created below a
    /// directory someone else could change.
    ///
    /// Directories created inside `$XDG_RUNTIME_DIR` or `/tmp` get mode 0700: they are one user's, and in `/tmp`
    /// anybody could otherwise get in the way. Elsewhere (`/run/udpd`) they get 0755 so that `control.mode` alone
    /// decides who may connect. The socket's own directory, when udpd creates it, is handed to `owner` (the user udpd
    /// drops to), who may then remove the socket at exit.
    private static func createDirectory(
        _ directory: String,
        owner: ProcessIdentity?,
        trusted: Set<UInt32>,
        isSocketDirectory: Bool
    ) throws(ControlServerError) {
        if try fileStatus(directory, code: .directory) != nil {
            if let unsafe = ControlSocketPath.firstUnsafeComponent(ofDirectory: directory, trustedOwners: trusted) {
                throw ControlServerError(.unsafePath, path: unsafe.component, detail: unsafe.reason)
            }
            return
        }
        let above = parent(of: directory)
        if above != directory { try createDirectory(above, owner: nil, trusted: trusted, isSocketDirectory: false) }
        let mode: mode_t = isPerUser(directory) ? 0o700 : 0o755
        do {
            try systemCall("mkdir", context: directory) { mkdir(directory, mode) }
        } catch  where error.errno == EEXIST {
            return
        } catch {
            throw ControlServerError(.directory, path: directory, systemError: error)
        }
        guard isSocketDirectory, let owner, owner.uid != UInt32(geteuid()) else { return }
        do {
            try systemCall("chown", context: directory) { chown(directory, uid_t(owner.uid), gid_t(owner.gid)) }
        } catch {
            throw ControlServerError(.directory, path: directory, systemError: error)
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
