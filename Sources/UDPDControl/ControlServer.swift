import Logging
import NIOCore
import NIOPosix
import Synchronization
import UDPDTransport

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
        channel: NIOAsyncChannel<ControlConnection, Never>,
        identity: SocketFileIdentity,
        logger: Logger,
        registry: ControlConnectionRegistry,
        access: ControlAccess
    ) {
        self.path = path
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
    public static func bind(
        path: String,
        mode: UInt32 = 0o600,
        runAs: ProcessIdentity? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> ControlServer {
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
        do {
            // SwiftNIO's async bind puts an AcceptBackoffHandler on the server channel: out of descriptors, accept
            // waits a second instead of spinning. Requests leave DescriptorTable.headroom for it, so it rarely must.
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 128)
                // `socat` and `nc -N` shut down their sending side after the request; still answer them.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(unixDomainSocketPath: path) { child in
                    registry.add(child)
                    return ControlConnection.setUp(child, timeout: requestTimeout, logger: logger)
                }
        } catch let error as IOError {
            let systemError = SystemCallError(call: "bind", errno: error.errnoCode, context: path)
            throw ControlServerError(.bind, path: path, systemError: systemError)
        } catch {
            throw ControlServerError(.bind, path: path, detail: "\(error)")
        }
        do {
            let identity = try SocketFile.finish(path, mode: mode)
            logger.info("control socket ready", metadata: ["path": "\(path)", "mode": "\(String(mode, radix: 8))"])
            return ControlServer(
                path: path,
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

    /// Removes the socket file if it is still ours, and logs what became of it: a file left behind is a warning.
    private func removeSocketFile() {
        let removal = SocketFile.remove(path, ifStill: identity)
        let metadata: Logger.Metadata = ["path": "\(path)", "file": "\(removal)"]
        if case .failed = removal {
            logger.warning("control socket closed", metadata: metadata)
        } else {
            logger.info("control socket closed", metadata: metadata)
        }
    }
}
