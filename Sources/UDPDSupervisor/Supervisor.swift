import Logging
import NIOCore
import UDPDConfig
import UDPDControl
import UDPDServices
import UDPDTransport

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the supervisor could not start, with everything an operator needs to fix it.
public struct SupervisorError: Error, Sendable, CustomStringConvertible {
    /// One line per problem: config errors as `FILE:LINE:COLUMN: error: MESSAGE`, bind failures naming the
    /// service, protocol, address and port.
    public var messages: [String]

    /// Creates an error.
    public init(messages: [String]) {
        self.messages = messages
    }

    public var description: String { messages.joined(separator: "\n") }
}

/// Owns every listener of the running configuration: binds them, serves them, reloads them and reports on them.
///
/// An actor: status requests and reloads arrive from the control socket and from signals at any time. A change (a
/// reload, an address update, the stop) holds the supervisor's turn from its start to its end, so that the awaits
/// inside one never let another interleave with it; status may run at any time, also while a change waits for a
/// host name to resolve.
public actor Supervisor {
    /// A listener that serves a service now.
    struct Entry {
        var service: String
        var listener: RunningListener
        /// The workers the configuration asked for; an adopted socket may be served by fewer.
        var plannedWorkers: Int
    }

    let configPath: String
    let group: any EventLoopGroup
    let pool: UDPWorkerPool
    let logger: Logger
    /// Sockets systemd handed over, until ``start()`` adopts or closes them.
    var inherited: [InheritedSocket]
    let startedAt = Date()
    let startedInstant = ContinuousClock.now

    var configuration: Configuration
    var generation = 0
    /// The registry of listening sockets: every listener udpd serves, one entry per protocol, address and port,
    /// whose ``RunningListener`` is the one owner of its sockets from bind (or adoption) to close. Reloads add and
    /// remove entries here only; the live upgrade and systemd's descriptor store enumerate it. A socket it closes
    /// stays open until no worker uses it (``SocketDescriptor/withDescriptor(_:)``). The other sockets have other
    /// single owners: a forward session's upstream socket belongs to its ``ForwardSession`` and closes with the last
    /// reference once retired; TCP connections belong to their SwiftNIO channels or, for exec, to the accepting
    /// thread until handed to the program.
    var listeners: [ListenerKey: Entry] = [:]
    var handlers: [String: ServiceHandlerSet] = [:]
    /// Counters of listeners that were removed, kept so that a service's totals never go backwards.
    var retiredCounters: [String: ListenerCountersSnapshot] = [:]
    var lastReload: ReloadOutcome?
    /// After a privilege drop, the one thread that may still bind ports below 1024.
    var binder: PrivilegedBinder?
    /// Where `transparent: true` forwards take their upstream sockets (made on ``binder``'s thread once there is one).
    let transparentSockets = TransparentSockets()
    /// The host's addresses and pktinfo support, which per-address plans expand from.
    var host: HostBindings
    /// Watches the kernel's address notifications while udpd runs; `nil` before ``start()`` or where it failed.
    var addressWatcher: AddressWatcher?
    /// Until when binds that failed with EADDRNOTAVAIL (tentative IPv6 addresses) are retried; `nil` when none are.
    var addressRetryDeadline: ContinuousClock.Instant?
    /// Address notifications, newest only (a burst is one): ``followAddressChanges()`` applies each.
    nonisolated let addressChanges: AsyncStream<AddressChange>
    let addressChangeSink: AsyncStream<AddressChange>.Continuation
    /// Told when a bind starts being retried, newest only: the retry loop of ``followAddressChanges()`` sleeps until
    /// then.
    nonisolated let addressRetries: AsyncStream<Void>
    let addressRetrySink: AsyncStream<Void>.Continuation
    /// Reloads applied and rejected since start, for status and metrics.
    var reloadCounts = ReloadCounts()
    /// Connections of removed TCP listeners, waiting out their grace period.
    let draining: AsyncStream<TCPListener>.Continuation
    /// What the ``Daemon`` drains.
    nonisolated let drainQueue: AsyncStream<TCPListener>
    /// Whether the stop began: reloads and address updates are refused from then on, and nothing starts.
    var stopping = false
    /// Whether a change holds the turn; see ``beginChange()``.
    var changeInProgress = false
    /// Changes waiting for the turn, first come first served.
    var changeWaiters: [CheckedContinuation<Void, Never>] = []
    /// Each forward service's upstream as resolved for the running configuration; a reload resolves every name again
    /// and rebuilds the service whose address changed.
    var resolvedUpstreams: [String: ResolvedUpstream] = [:]
    /// The listening sockets kept in systemd's descriptor store; `nil` when systemd keeps none for udpd.
    var descriptorStore: DescriptorStoreRecord?

    /// Creates a supervisor for `configuration`, which was read from `configPath`; nothing is bound yet.
    ///
    /// `withoutDestinationInfo` is the testing aid that reproduces a platform without pktinfo: wildcard UDP services
    /// are then served per address, as they would be there.
    ///
    /// `inherited` are the sockets systemd handed over: ``start()`` adopts each for the listener whose protocol,
    /// address and port it matches, and closes the others.
    public init(
        configuration: Configuration,
        configPath: String,
        group: any EventLoopGroup,
        pool: UDPWorkerPool,
        logger: Logger,
        withoutDestinationInfo: Bool = false,
        inherited: [InheritedSocket] = []
    ) {
        self.configuration = configuration
        self.configPath = configPath
        self.group = group
        self.pool = pool
        self.logger = logger
        let families: [IPFamily] = [.ipv4, .ipv6]
        let capable = withoutDestinationInfo ? [] : families.filter(UDPListenerSocket.destinationInfoIsAvailable)
        self.host = HostBindings(addresses: [], destinationInfo: Set(capable))
        self.inherited = inherited
        (drainQueue, draining) = AsyncStream.makeStream(of: TCPListener.self)
        (addressChanges, addressChangeSink) = AsyncStream.makeStream(
            of: AddressChange.self,
            bufferingPolicy: .bufferingNewest(1)
        )
        (addressRetries, addressRetrySink) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The configuration running now.
    public var runningConfiguration: Configuration { configuration }

    /// Binds and starts every listener of the initial configuration; on any failure closes what it opened and
    /// throws, naming each service, protocol, address and port that failed.
    public func start() async throws(SupervisorError) {
        let upstreams = await UpstreamResolution.resolve(configuration.services)
        let handlers = try buildHandlers(for: configuration, upstreams: upstreams)
        resolvedUpstreams = upstreams
        startWatchingAddresses()
        try refreshAddresses()
        try checkExplicitAddresses(configuration)
        logFallbacks(configuration)
        let adoptable = matchInherited(inherited, to: configuration.plannedListeners(on: host))
        inherited = []
        // Planned again: an adopted dual-stack socket serves IPv4 too, so its IPv4 twin is not bound.
        let planned = configuration.plannedListeners(on: host)
        // Room for every socket at once, plus the few the control and metrics servers open next.
        DescriptorTable.reserve(planned.reduce(0) { $0 + $1.workers } + 32)
        let bound = try await bindAll(planned, inherited: adoptable)
        self.handlers = handlers
        do {
            for (plan, socket) in bound {
                try await startListener(plan, socket: socket)
            }
        } catch {
            for (_, socket) in bound { socket.close() }
            await stopAll(grace: .zero)
            throw SupervisorError(messages: ["cannot start listeners: \(error)"])
        }
        publishOwnListeners()
        generation = 1
        syncDescriptorStore()
    }

    /// Builds every service's handlers, or reports every service whose handlers cannot be built. A service that
    /// has handlers in `previous` keeps its connection table, so that its open connections still count. A forward
    /// service's upstream comes from `upstreams`, resolved beforehand off the supervisor (see
    /// ``UpstreamResolution``).
    func buildHandlers(
        for configuration: Configuration,
        upstreams: [String: ResolvedUpstream],
        previous: [String: ServiceHandlerSet] = [:]
    ) throws(SupervisorError) -> [String: ServiceHandlerSet] {
        var handlers: [String: ServiceHandlerSet] = [:]
        var problems: [String] = []
        let context = ServiceContext(
            group: group,
            logger: logger,
            pool: pool,
            transparentSockets: transparentSockets
        )
        for service in configuration.services {
            do {
                let pair = try ServiceHandlers.handlers(
                    for: service,
                    context: context,
                    upstreams: try upstreams[service.name]?.address.get()
                )
                handlers[service.name] = ServiceHandlerSet(
                    datagram: pair.datagram,
                    stream: pair.stream,
                    activity: pair.activity,
                    connectionPolicy: ConnectionPolicy(
                        service,
                        table: previous[service.name]?.connectionPolicy.table ?? ConnectionTable()
                    ),
                    execConnections: pair.execConnections
                )
            } catch {
                problems.append("\(configuration.file):\(service.position): error: \(error)")
            }
        }
        guard problems.isEmpty else { throw SupervisorError(messages: problems) }
        return handlers
    }

    /// Binds every planned listener, or none: on the first failure the sockets already bound are closed.
    /// A listener with a socket in `inherited` adopts it instead of binding.
    ///
    /// A family the host does not support (EAFNOSUPPORT) is skipped with a log line, as long as the service has
    /// other listeners; so is an address that cannot be bound yet (a tentative IPv6 address), which is retried.
    /// `serving` names services that keep listeners of the running configuration.
    func bindAll(
        _ planned: [PlannedListener],
        inherited: [ListenerKey: [InheritedSocket]] = [:],
        serving: Set<String> = []
    ) async throws(SupervisorError) -> [(PlannedListener, BoundSocket)] {
        var bound: [(PlannedListener, BoundSocket)] = []
        var failures: [String] = []
        var fresh = await bindSockets(planned.filter { inherited[$0.key] == nil }).makeIterator()
        for plan in planned {
            do throws(BindError) {
                if let socket = inherited[plan.key] {
                    bound.append((plan, try adopt(socket, for: plan)))
                } else if let result = fresh.next() {
                    bound.append((plan, try result.get()))
                }
            } catch  where error.code == .addressNotAvailable && plan.followsAddresses {
                noteUnusableAddress(plan, error: error)
            } catch  where error.code == .familyNotSupported && plan.key.endpoint.isWildcard {
                logger.notice(
                    "skipping a listener: the host does not support its address family",
                    metadata: ["service": "\(plan.service)", "listener": "\(plan.key)"]
                )
            } catch {
                failures.append("service '\(plan.service)': \(error)")
            }
        }
        // A family the host lacks may be skipped, but a service left with no listener at all has failed. Services
        // that follow addresses may have none yet: their addresses are still tentative, or not there at all.
        let following = Set(planned.filter(\.followsAddresses).map(\.service))
        let servedServices = Set(bound.map(\.0.service)).union(serving).union(following)
        for service in Set(planned.map(\.service)).subtracting(servedServices).sorted() where failures.isEmpty {
            failures.append("service '\(service)': none of its listeners could be opened on this host")
        }
        guard failures.isEmpty else {
            for (_, socket) in bound { socket.close() }
            for sockets in inherited.values { sockets.forEach { $0.descriptor.close() } }
            throw SupervisorError(messages: failures)
        }
        return bound
    }

    /// Binds (and makes transparent sockets) from now on on `binder`'s thread, the only one that kept capabilities
    /// after the drop.
    public func bindOn(_ binder: PrivilegedBinder) {
        self.binder = binder
        transparentSockets.makeOn(binder)
    }

    /// Binds planned listeners' sockets, in order; on the privileged binder thread when privileges were dropped, in
    /// one trip there that the supervisor awaits without blocking its thread.
    func bindSockets(_ plans: [PlannedListener]) async -> [Result<BoundSocket, BindError>] {
        guard !plans.isEmpty else { return [] }
        let bindEach: @Sendable () -> [Result<BoundSocket, BindError>] = {
            plans.map { plan in Result { () throws(BindError) in try BoundSocket.bind(plan) } }
        }
        guard let binder else { return bindEach() }
        return await binder.run(bindEach)
    }

    /// Binds one planned listener's sockets (see ``bindSockets(_:)``).
    func bindSocket(_ plan: PlannedListener) async throws(BindError) -> BoundSocket {
        try await bindSockets([plan])[0].get()
    }

    /// Waits until no other change (a reload, an address update, the stop) runs, then holds the turn until
    /// ``endChange()``, so that the awaits inside a change (resolving names, starting and stopping listeners) never
    /// let another change interleave with it.
    func beginChange() async {
        guard changeInProgress else {
            changeInProgress = true
            return
        }
        await withCheckedContinuation { changeWaiters.append($0) }
    }

    /// Hands the turn to the next waiting change, or frees it.
    func endChange() {
        syncDescriptorStore()
        if changeWaiters.isEmpty {
            changeInProgress = false
        } else {
            changeWaiters.removeFirst().resume()
        }
    }

    /// Refuses every reload and address update from now on (a stop is coming): a reload still waiting for its turn
    /// is then answered at once instead of being applied and torn down again.
    public func beginStopping() {
        stopping = true
    }

    /// Whether the stop began.
    public var isStopping: Bool { stopping }

    /// Starts serving one bound socket and records it.
    func startListener(_ plan: PlannedListener, socket: BoundSocket) async throws {
        guard let handlers = handlers[plan.service] else { return }
        let listener = try await RunningListener.start(
            socket,
            key: plan.key,
            service: plan.service,
            handlers: handlers,
            group: group,
            pool: pool
        )
        listeners[plan.key] = Entry(service: plan.service, listener: listener, plannedWorkers: plan.workers)
        logger.info(
            "listening",
            metadata: [
                "service": "\(plan.service)", "proto": "\(plan.key.proto.rawValue)",
                "address": "\(plan.key.endpoint.addressText)", "port": "\(plan.key.endpoint.port)",
                "reply_source": "\(listener.replySource.rawValue)", "workers": "\(listener.workerCount)",
            ]
        )
        if listener.replySource == .kernel {
            logger.warning(
                """
                this wildcard socket has neither IP_PKTINFO nor IP_RECVDSTADDR: the kernel picks the source \
                address of its replies, which is wrong on multi-homed hosts
                """,
                metadata: ["service": "\(plan.service)", "listener": "\(plan.key)"]
            )
        }
    }

    /// Stops every listener; TCP connections get `grace` to finish.
    ///
    /// A change under way (a reload, an address update) completes first: the stop waits for its turn, and from then
    /// on nothing starts again.
    public func stopAll(grace: Duration) async {
        stopping = true
        await beginChange()
        defer { endChange() }
        logger.notice("stopping every listener", metadata: ["listeners": "\(listeners.count)"])
        // The UDP worker threads stop first: then no socket is being served, and each closes without waiting for
        // its thread's pass (1,000 services waited one pass per socket, about 0.4 s in all).
        pool.shutdown()
        var tcp: [TCPListener] = []
        for entry in listeners.values {
            if let listener = await entry.listener.stop(pool: pool) { tcp.append(listener) }
        }
        listeners = [:]
        // The handlers go after the listeners that hold them: a forward's deinit then retires its sessions' sockets
        // from the (stopped) pool's threads, which only drops them from their registrations.
        handlers = [:]
        addressWatcher?.stop()
        addressWatcher = nil
        addressChangeSink.finish()
        addressRetrySink.finish()
        draining.finish()
        await withTaskGroup(of: Void.self) { group in
            for listener in tcp {
                group.addTask { await listener.closeConnections(after: grace) }
            }
        }
    }
}
