import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The optional HTTP endpoint (`metrics: {listen: HOST:PORT}`) that serves the Prometheus exposition at
/// `GET /metrics` (and `HEAD`), so that a Prometheus server can scrape udpd without `udpctl`.
///
/// Each connection is served by its own child task: one request, one response, then the connection closes
/// (`Connection: close`; scrapers reconnect per scrape anyway). A connection that has not completed its request
/// within ``requestTimeout`` is closed. Other paths answer 404, other methods 405.
public final class MetricsHTTPServer: Sendable {
    /// How long a connection may take to send its request.
    public static let requestTimeout: Duration = .seconds(10)

    /// The address the endpoint listens on (with the real port when 0 was asked for).
    public let localAddress: SocketAddress
    private let channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    private let logger: Logger
    /// udpd's own copy of the listening socket, which an upgrade hands to the new udpd (named `metrics`); closed
    /// when the endpoint stops.
    public let listeningSocket: TCPListenerSocket

    private init(
        channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        localAddress: SocketAddress,
        listeningSocket: TCPListenerSocket,
        logger: Logger
    ) {
        self.channel = channel
        self.localAddress = localAddress
        self.listeningSocket = listeningSocket
        self.logger = logger
    }

    /// Binds the endpoint on `host` (an address literal or a name) and `port`; call ``run(render:)`` next.
    ///
    /// udpd opens the listening socket itself and keeps a copy (``listeningSocket``), so that an upgrade can hand
    /// it to the new udpd. An `inherited` socket (named `metrics` by the udpd being upgraded) is adopted when it is
    /// bound to the same address and port, and closed otherwise.
    public static func bind(
        host: String,
        port: Int,
        group: any EventLoopGroup,
        logger: Logger,
        inherited: SocketDescriptor? = nil
    ) async throws -> MetricsHTTPServer {
        let socket: TCPListenerSocket
        do {
            socket = try await listeningSocket(host: host, port: port, inherited: inherited)
        } catch let error as BindError {
            let errno = error.underlying.errno
            throw MetricsEndpointError(host: host, port: port, reason: MetricsEndpointError.reason(errno: errno))
        } catch {
            throw MetricsEndpointError(host: host, port: port, reason: "\(error)")
        }
        let channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            // SwiftNIO owns (and closes) the copy from here on.
            let copy = try socket.duplicate().descriptor.release()
            do {
                channel = try await bindChannel(socket: copy, group: group)
            } catch {
                close(copy)
                throw error
            }
        } catch {
            socket.close()
            throw MetricsEndpointError(host: host, port: port, reason: "\(error)")
        }
        guard let local = channel.channel.localAddress else {
            try? await channel.channel.close()
            socket.close()
            throw IOError(errnoCode: 22, reason: "the metrics endpoint has no local address")
        }
        logger.info("metrics endpoint ready", metadata: ["listen": "\(local)", "path": "/metrics"])
        return MetricsHTTPServer(channel: channel, localAddress: local, listeningSocket: socket, logger: logger)
    }

    /// The endpoint's socket: the inherited one if it is bound to what is asked, else a new one. A name is resolved
    /// on SwiftNIO's thread pool (getaddrinfo blocks).
    private static func listeningSocket(
        host: String,
        port: Int,
        inherited: SocketDescriptor?
    ) async throws -> TCPListenerSocket {
        let endpoint: IPEndpoint
        if let literal = IPEndpoint(address: host, port: UInt16(clamping: port)) {
            endpoint = literal
        } else {
            let resolved = try await NIOThreadPool.singleton.runIfActive {
                try SocketAddress.makeAddressResolvingHost(host, port: port)
            }
            guard let address = resolved.ipAddress,
                let named = IPEndpoint(address: address, port: UInt16(clamping: port))
            else { throw IOError(errnoCode: EADDRNOTAVAIL, reason: "\(host) resolves to no IP address") }
            endpoint = named
        }
        if let inherited {
            if let local = try? inherited.localEndpoint(context: "inherited metrics socket"), local == endpoint {
                return try TCPListenerSocket.adopt(inherited)
            }
            inherited.close()
        }
        return try TCPListenerSocket.bind(endpoint, backlog: 128)
    }

    private static func bindChannel(
        socket: CInt,
        group: any EventLoopGroup
    ) async throws -> NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never> {
        // As for the control socket, SwiftNIO's async bind adds an AcceptBackoffHandler: no spinning out of
        // descriptors.
        try await ServerBootstrap(group: group)
            .bind(socket) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: child
                    )
                }
            }
    }

    /// Serves connections until the calling task is cancelled, then closes the listening socket.
    ///
    /// - Parameter render: produces the exposition for one scrape.
    public func run(render: @escaping @Sendable () async -> String) async throws {
        let logger = self.logger
        do {
            try await channel.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask {
                            await Self.serve(connection, render: render, logger: logger)
                        }
                    }
                }
            }
        } catch  where Task.isCancelled {
            // Cancellation is how the endpoint is asked to stop; the stream may report it as an error.
        }
        listeningSocket.close()
        logger.info("metrics endpoint closed")
    }

    /// Answers one request, bounded by ``requestTimeout``; never throws.
    private static func serve(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
        render: @escaping @Sendable () async -> String,
        logger: Logger
    ) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await connection.executeThenClose { requests, responses in
                        var head: HTTPRequestHead?
                        for try await part in requests {
                            switch part {
                            case .head(let requestHead): head = requestHead
                            case .body: continue
                            case .end:
                                guard let head else { return }
                                try await respond(to: head, with: responses, render: render)
                                return
                            }
                        }
                    }
                } catch {
                    logger.debug("metrics connection ended: \(error)")
                }
            }
            group.addTask {
                try? await Task.sleep(for: requestTimeout)
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Writes the response to one request.
    private static func respond(
        to head: HTTPRequestHead,
        with responses: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        render: @Sendable () async -> String
    ) async throws {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let status: HTTPResponseStatus
        let contentType: String
        let body: String
        var headers = HTTPHeaders()
        if path != "/metrics" {
            (status, contentType, body) = (.notFound, "text/plain; charset=utf-8", "udpd serves only /metrics\n")
        } else if head.method != .GET && head.method != .HEAD {
            (status, contentType, body) = (.methodNotAllowed, "text/plain; charset=utf-8", "use GET\n")
            headers.add(name: "Allow", value: "GET, HEAD")
        } else {
            (status, contentType, body) = (.ok, PrometheusExposition.contentType, await render())
        }
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        try await responses.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
        if head.method != .HEAD {
            try await responses.write(.body(.byteBuffer(ByteBuffer(string: body))))
        }
        try await responses.write(.end(nil))
    }
}

/// The metrics endpoint could not be opened: where, and why, in an operator's words rather than NIO's
/// `bind(descriptor:ptr:bytes:)`.
public struct MetricsEndpointError: Error, Sendable, CustomStringConvertible {
    /// The host as configured.
    public var host: String
    /// The port.
    public var port: Int
    /// What failed, in words.
    public var reason: String

    public var description: String {
        let listen = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return "metrics endpoint \(listen): cannot open its TCP socket: \(reason)"
    }

    /// The words for a failed bind's `errno`.
    static func reason(errno: Int32) -> String {
        switch errno {
        case EADDRINUSE: "the port is already in use by another socket (another program, or a TCP listener of udpd)"
        case EADDRNOTAVAIL: "the address is not configured on this host"
        case EACCES: "the port needs privileges udpd does not have"
        default: String(cString: strerror(errno))
        }
    }
}
