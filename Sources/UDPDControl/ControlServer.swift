import Logging
import NIOCore
import NIOPosix
import Synchronization
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The daemon's side of the control socket: accepts connections and answers each request line with the handler's
/// response.
///
/// Every connection is served by its own child task, so clients are answered concurrently; a connection may carry
/// several requests in sequence. A connection that sends no complete request within ``requestTimeout`` is closed,
/// and a request line over ``ControlProtocol/maximumRequestSize`` bytes is answered with an error, then closed.
/// Malformed requests get an error response (`ok: false`) and the connection stays open.
public final class ControlServer: Sendable {
    /// How long a connection may take to send a request line before it is closed.
    public static let requestTimeout: TimeAmount = .seconds(5)
    /// Control connections open at once; at the cap the oldest is closed (a flood cannot starve `status`).
    public static let maximumConnections = 32

    /// The socket's path.
    public let path: String
    /// Where the socket was bound for an upgrade, until ``takeOverPath()`` renames it to ``path``; `nil` otherwise.
    private let stagingPath: String?
    private let channel: NIOAsyncChannel<ControlConnection, Never>
    private let identity: SocketFileIdentity
    private let logger: Logger
    private let registry: ControlConnectionRegistry
    /// Who may send requests.
    public let access: ControlAccess
    /// Requests refused because the peer's uid may not use the socket.
    public let refusedPeers = Atomic<UInt64>(0)

    private init(
        path: String,
        stagingPath: String?,
        channel: NIOAsyncChannel<ControlConnection, Never>,
        identity: SocketFileIdentity,
        logger: Logger,
        registry: ControlConnectionRegistry,
        access: ControlAccess
    ) {
        self.path = path
        self.stagingPath = stagingPath
        self.channel = channel
        self.identity = identity
        self.logger = logger
        self.registry = registry
        self.access = access
    }

    /// Control connections closed to make room under ``maximumConnections``.
    public var evictedConnections: UInt64 { registry.evicted.load(ordering: .relaxed) }

    /// What the socket refused so far, for status and metrics.
    public var counts: ControlSocketCounts {
        ControlSocketCounts(refusedPeers: refusedPeers.load(ordering: .relaxed), evictedConnections: evictedConnections)
    }

    /// Prepares and binds the control socket at `path`.
    ///
    /// Refuses a path below a directory that someone other than root, the current user and `runAs` could change
    /// (``ControlServerError/Code/unsafePath``, naming it, as OpenSSH's `StrictModes`); creates the socket's directory
    /// when missing (mode 0700 inside `$XDG_RUNTIME_DIR` or `/tmp`, 0755 elsewhere; owned by `runAs` when given);
    /// throws ``ControlServerError/Code/alreadyRunning`` when a live daemon answers on `path`; replaces a stale
    /// socket file (one that refuses connections); refuses to replace anything that is not a socket; binds; and sets
    /// the socket file's mode to `mode`. Call ``run(handler:)`` next: it serves and removes the file when done.
    ///
    /// - Parameters:
    ///   - path: the socket path, at most 107 bytes on Linux (103 on Darwin).
    ///   - mode: the socket file's permission bits; who may connect is who may write to it.
    ///   - runAs: the user udpd drops to after binding (`user:` when started as root), who must be able to remove the
    ///     socket file at exit; `nil` when udpd keeps its user.
    ///   - group: the event loops connections are served on.
    ///   - logger: where requests and connection problems are logged.
    ///   - takingOver: an upgrade: the udpd being replaced still answers on `path`, so the socket is bound beside it
    ///     (`PATH.upgrade`) and ``takeOverPath()`` later renames it over `path` in one step, so that a client always
    ///     finds one daemon or the other.
    public static func bind(
        path finalPath: String,
        mode: UInt32 = 0o600,
        runAs: ProcessIdentity? = nil,
        group: any EventLoopGroup,
        logger: Logger,
        takingOver: Bool = false
    ) async throws -> ControlServer {
        let path = takingOver ? finalPath + ".upgrade" : finalPath
        try SocketFile.prepare(path, runAs: runAs)
        if let runAs, let owner = SocketFile.directoryOwner(of: path), owner != runAs.uid {
            let text =
                "the control socket's directory is not the dropped user's: the socket file will stay "
                + "behind at exit (the next start replaces it)"
            logger.warning(
                "\(text)",
                metadata: ["path": "\(path)", "directory_uid": "\(owner)", "user_uid": "\(runAs.uid)"]
            )
        }
        let registry = ControlConnectionRegistry(limit: maximumConnections)
        let channel: NIOAsyncChannel<ControlConnection, Never>
        // udpd binds the socket itself and hands SwiftNIO the bound descriptor: a server channel SwiftNIO bound by
        // path unlinks that path when it closes, which would remove the socket of the udpd that took over by an
        // upgrade. The file is removed by ``run(handler:)``, only if it is still this server's.
        let socket: Int32
        do {
            socket = try makeUnixStreamSocket(context: path)
        } catch {
            throw ControlServerError(.bind, path: path, systemError: error)
        }
        do {
            _ = try withUnixSocketAddress(path) { (address, length) throws(SystemCallError) in
                try systemCall("bind", context: path) { Glibc.bind(socket, address, length) }
            }
            try systemCall("listen", context: path) { listen(socket, 128) }
        } catch {
            closeDescriptor(socket)
            throw ControlServerError(.bind, path: path, systemError: error)
        }
        do {
            // SwiftNIO's async bind puts an AcceptBackoffHandler on the server channel: out of descriptors, accept
            // waits a second instead of spinning. Requests leave DescriptorTable.headroom for it, so it rarely must.
            channel = try await ServerBootstrap(group: group)
                // `socat` and `nc -N` shut down their sending side after the request; still answer them.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(socket) { child in
                    registry.add(child)
                    return ControlConnection.setUp(child, timeout: requestTimeout, logger: logger)
                }
        } catch let error as IOError {
            closeDescriptor(socket)
            if let identity = SocketFile.identity(of: path) { SocketFile.remove(path, ifStill: identity) }
            let systemError = SystemCallError(call: "bind", errno: error.errnoCode, context: path)
            throw ControlServerError(.bind, path: path, systemError: systemError)
        } catch {
            closeDescriptor(socket)
            if let identity = SocketFile.identity(of: path) { SocketFile.remove(path, ifStill: identity) }
            throw ControlServerError(.bind, path: path, detail: "\(error)")
        }
        do {
            let identity = try SocketFile.finish(path, mode: mode)
            logger.info("control socket ready", metadata: ["path": "\(path)", "mode": "\(String(mode, radix: 8))"])
            return ControlServer(
                path: finalPath,
                stagingPath: takingOver ? path : nil,
                channel: channel,
                identity: identity,
                logger: logger,
                registry: registry,
                access: ControlAccess(ownerUID: UInt32(geteuid()), mode: mode)
            )
        } catch {
            try? await channel.channel.close()
            if let identity = SocketFile.identity(of: path) { SocketFile.remove(path, ifStill: identity) }
            throw error
        }
    }

    /// Serves connections until the calling task is cancelled, then closes the socket and removes its file (if it is
    /// still the one this server bound).
    ///
    /// Call it once. In-flight requests are cancelled with the task; the handler should return promptly then.
    ///
    /// - Parameter handler: answers one request from one peer; it runs concurrently for different connections.
    public func run(handler: @escaping @Sendable (ControlRequest, ControlPeer) async -> ControlResponse) async throws {
        defer { removeSocketFile() }
        let logger = self.logger
        let access = self.access
        do {
            try await channel.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask {
                            guard access.permits(connection.peer) else {
                                self.refusedPeers.wrappingAdd(1, ordering: .relaxed)
                                await connection.refuse(logger: logger)
                                return
                            }
                            await connection.serve(handler: handler, logger: logger)
                        }
                    }
                }
            }
        } catch  where Task.isCancelled {
            // Cancellation is how the server is asked to stop; the stream may report it as an error.
        }
    }

    /// Renames the socket bound for an upgrade over ``path``, where the old udpd answered until now (its file is
    /// replaced in one step; the old udpd, seeing another file there, leaves it alone at exit). Nothing without an
    /// upgrade.
    public func takeOverPath() throws(ControlServerError) {
        guard let stagingPath else { return }
        do {
            try systemCall("rename", context: "\(stagingPath) to \(path)") { rename(stagingPath, path) }
        } catch {
            throw ControlServerError(.bind, path: path, systemError: error)
        }
    }

    /// Removes the socket file if it is still ours, and logs what became of it: a file left behind is a warning.
    private func removeSocketFile() {
        if let stagingPath { SocketFile.remove(stagingPath, ifStill: identity) }
        let removal = SocketFile.remove(path, ifStill: identity)
        let metadata: Logger.Metadata = ["path": "\(path)", "file": "\(removal)"]
        if case .failed = removal {
            logger.warning("control socket closed", metadata: metadata)
        } else {
            logger.info("control socket closed", metadata: metadata)
        }
    }
}
