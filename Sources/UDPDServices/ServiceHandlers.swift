import Logging
import NIOCore
import UDPDConfig
import UDPDTransport

/// A service whose handler udpd cannot build.
public struct ServiceHandlerError: Error, Sendable, CustomStringConvertible {
    /// The service's name.
    public var service: String
    /// Why its handler cannot be built.
    public var message: String

    /// Creates an error.
    public init(service: String, message: String) {
        self.service = service
        self.message = message
    }

    public var description: String { "service '\(service)': \(message)" }
}

/// What handlers need from the daemon around them.
public struct ServiceContext: Sendable {
    /// Where upstream TCP connections run and forward sessions are swept.
    public var group: any EventLoopGroup
    /// Where handlers log (upstream failures, exec programs' stderr).
    public var logger: Logger
    /// The daemon's UDP worker threads, which also serve forward sessions' upstream sockets. It outlives every
    /// handler.
    public var pool: UDPWorkerPool
    /// Where `transparent: true` forwards take their upstream sockets.
    public var transparentSockets: TransparentSockets

    /// Creates a context.
    public init(
        group: any EventLoopGroup,
        logger: Logger,
        pool: UDPWorkerPool,
        transparentSockets: TransparentSockets = TransparentSockets()
    ) {
        self.group = group
        self.logger = logger
        self.pool = pool
        self.transparentSockets = transparentSockets
    }
}

/// The handlers of one service's UDP and TCP listeners, built together so that they can share state (an exec
/// service's `max-instances` counts programs started for datagrams and for connections alike).
public struct ServiceHandlerPair: Sendable {
    /// The handler of the service's UDP listeners.
    public var datagram: any DatagramHandler
    /// What builds the handlers of each connection accepted by the service's TCP listeners.
    public var stream: StreamHandlerSlot.Factory
    /// What the handlers hold open now, for status and metrics.
    public var activity: ServiceActivity = ServiceActivity()
    /// For an exec service: what its TCP listeners, which accept their own connections, do with each one.
    public var execConnections: ExecConnectionStarter?
}

/// Live figures of a service's handlers: UDP sessions a forward keeps open, programs an exec runs. `nil` for
/// handlers that have no such thing.
public struct ServiceActivity: Sendable {
    /// Exec: programs running now.
    public var execInstances: (@Sendable () -> Int)?
    /// Forward: its upstreams and their health.
    public var upstreams: UpstreamPool?
    /// Forward: the UDP handler, whose sessions a reload hands to the service's next one
    /// (``ForwardDatagramHandler/takeOver(from:)``).
    public var forward: ForwardDatagramHandler?

    /// Forward: UDP sessions open now.
    public var forwardSessions: Int? { forward?.sessionCount }

    /// Creates the figures of a handler.
    public init(
        execInstances: (@Sendable () -> Int)? = nil,
        upstreams: UpstreamPool? = nil,
        forward: ForwardDatagramHandler? = nil
    ) {
        self.execInstances = execInstances
        self.upstreams = upstreams
        self.forward = forward
    }
}

/// Builds the handlers that serve a service's UDP and TCP listeners from its definition.
///
/// Handlers are rebuilt on every reload. They hold no thread and nothing open until traffic arrives, so a built
/// handler that the reload does not put in place (its service did not change) costs nothing.
public enum ServiceHandlers {
    /// Default `timeout` of a forward's UDP sessions.
    public static let defaultSessionTimeout = Duration.seconds(30)
    /// Default `max-sessions` of a forward.
    public static let defaultMaxSessions = 10_000
    /// Default `max-message` of krb5 framing (MIT krb5's own limit).
    public static let defaultMaxMessage = 1 << 20
    /// Default `timeout` of an exec program.
    public static let defaultExecTimeout = Duration.seconds(10)
    /// Default `max-instances` of an exec service.
    public static let defaultMaxInstances = 40
    /// How long a forward waits for its upstream to accept a TCP connection.
    public static let upstreamConnectTimeout = Duration.seconds(5)

    /// Builds both handlers of `service`. A forward's `upstreams`, when given, are its upstreams already resolved, in
    /// the order of the configuration (the supervisor resolves host names off its own path); without them host names
    /// are resolved here, blocking.
    public static func handlers(
        for service: ServiceDefinition,
        context: ServiceContext,
        upstreams resolved: [SocketAddress]? = nil
    ) throws(ServiceHandlerError) -> ServiceHandlerPair {
        let logger = context.logger.with(service: service.name)
        switch service.handler {
        case .echo:
            return ServiceHandlerPair(
                datagram: guarded(EchoDatagramHandler(), service),
                stream: { counters in
                    [EchoStreamHandler()]
                }
            )
        case .discard:
            return ServiceHandlerPair(
                datagram: guarded(DiscardDatagramHandler(), service),
                stream: { counters in
                    [DiscardStreamHandler()]
                }
            )
        case .forward:
            let addresses: [SocketAddress]
            if let resolved { addresses = resolved } else { addresses = try resolveUpstreams(service) }
            guard !addresses.isEmpty else {
                throw ServiceHandlerError(service: service.name, message: "handler 'forward' needs an 'upstream'")
            }
            var members: [UpstreamPool.Member] = []
            for address in addresses {
                guard let endpoint = address.withSockAddr({ address, _ in IPEndpoint(UnsafeRawPointer(address)) })
                else {
                    throw ServiceHandlerError(
                        service: service.name,
                        message: "upstream \(address) is not an IP address"
                    )
                }
                members.append(UpstreamPool.Member(endpoint: endpoint, address: address))
            }
            let upstreams = UpstreamPool(
                members: members,
                check: service.healthCheck,
                group: context.group,
                logger: logger
            )
            upstreams.startProbing()
            let datagram = ForwardDatagramHandler(
                upstreams: upstreams,
                pool: context.pool,
                group: context.group,
                logger: logger,
                timeout: service.timeout ?? defaultSessionTimeout,
                maxSessions: service.maxSessions ?? defaultMaxSessions,
                sendsProxyHeader: service.proxyProtocol == .v2,
                logsSessions: service.logSessions,
                transparentSockets: service.transparent ? context.transparentSockets : nil
            )
            let sessionLog = datagram.sessionLog
            let failures = RateLimitedLog(logger: logger)
            var pair = ServiceHandlerPair(
                datagram: guarded(datagram, service),
                stream: { counters in
                    [
                        ForwardStreamHandler(
                            upstreams: upstreams,
                            connectTimeout: upstreamConnectTimeout,
                            counters: counters,
                            failures: failures,
                            sendsProxyHeader: service.proxyProtocol == .v2,
                            sessionLog: sessionLog,
                            transparentSockets: service.transparent ? context.transparentSockets : nil
                        )
                    ]
                }
            )
            pair.activity = ServiceActivity(upstreams: upstreams, forward: datagram)
            return pair
        case .exec:
            guard let command = service.command, !command.isEmpty else {
                throw ServiceHandlerError(service: service.name, message: "handler 'exec' needs a 'command'")
            }
            let identity: ProcessIdentity?
            do {
                identity = try ProcessIdentity.resolve(user: service.user, group: service.group)
            } catch {
                throw ServiceHandlerError(service: service.name, message: "\(error)")
            }
            let program = ExecProgram(
                service: service.name,
                argv: command,
                timeout: service.timeout ?? defaultExecTimeout,
                maxInstances: service.maxInstances ?? defaultMaxInstances,
                identity: identity,
                logger: logger
            )
            var pair = ServiceHandlerPair(
                datagram: guarded(ExecDatagramHandler(program: program), service),
                stream: { counters in [ExecUnavailableStreamHandler(counters: counters)] }
            )
            pair.activity = ServiceActivity(execInstances: { program.instances })
            pair.execConnections = ExecConnectionStarter(program: program)
            return pair
        }
    }

    /// `handler` behind the service's ``DatagramPolicy`` (max-datagram, allow/deny, rate-limit) when it has one.
    static func guarded(_ handler: any DatagramHandler, _ service: ServiceDefinition) -> any DatagramHandler {
        guard let policy = DatagramPolicy(service) else { return handler }
        return DatagramPolicyHandler(policy: policy, inner: handler)
    }

    /// The upstreams' socket addresses, in order; a host name is resolved once, here (at start and at each reload).
    private static func resolveUpstreams(_ service: ServiceDefinition) throws(ServiceHandlerError) -> [SocketAddress] {
        var addresses: [SocketAddress] = []
        for upstream in service.upstreams {
            do {
                addresses.append(try SocketAddress(ipAddress: upstream.host, port: Int(upstream.port)))
            } catch {
                do {
                    addresses.append(
                        try SocketAddress.makeAddressResolvingHost(upstream.host, port: Int(upstream.port))
                    )
                } catch {
                    throw ServiceHandlerError(
                        service: service.name,
                        message: "cannot resolve upstream '\(upstream)': \(error)"
                    )
                }
            }
        }
        return addresses
    }
}

extension Logger {
    /// This logger with a `service` metadata entry.
    func with(service: String) -> Logger {
        var logger = self
        logger[metadataKey: "service"] = "\(service)"
        return logger
    }
}
