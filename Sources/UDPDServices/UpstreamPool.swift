import Logging
import NIOCore
import Synchronization
import UDPDConfig
import UDPDTransport

/// One forward service's upstreams, in order of preference, and what udpd knows of each one's health.
///
/// New UDP sessions and TCP relays go to the first upstream that is up (``firstUp(after:)``); a session keeps its
/// upstream while ``isUp(_:)`` says so, which is one atomic load, the only cost on the datagram path. An upstream
/// goes down at once on a hard failure that traffic reveals (``markDown(_:because:)``: an ICMP error on a session
/// socket, a refused or timed-out TCP connect), or after `fall` failed probes in a row; it comes back after `rise`
/// good probes, or, with `probe: none`, once `interval` has passed.
///
/// With `probe: krb5` or `dns`, an ``UpstreamProber`` on one of the daemon's event loops probes every upstream each
/// `interval` from ``startProbing()`` until the pool goes (a reload that rebuilds the service starts a new one).
///
/// `Sendable`: the upstreams are immutable; each one's health is a set of atomics (``UpstreamHealth``); the prober
/// is behind a mutex.
public final class UpstreamPool: Sendable {
    /// One upstream as resolved when the service was built.
    public struct Member: Sendable {
        /// Where UDP sessions connect.
        public var endpoint: IPEndpoint
        /// Where TCP relays connect (the same address).
        public var address: SocketAddress
    }

    /// What status and metrics show of one upstream.
    public struct Snapshot: Sendable, Equatable {
        /// The upstream's address, without brackets, and port.
        public var endpoint: IPEndpoint
        /// Whether new sessions may go there.
        public var isUp: Bool
        /// UDP sessions and TCP relays open to it now.
        public var sessions: Int
        /// Hard failures seen by traffic and failed probes, since the service was built.
        public var failures: UInt64
        /// The last good probe's round trip; `nil` before the first, and without probes.
        public var probeRoundTrip: Duration?
    }

    /// The upstreams, in order of preference.
    public let members: [Member]
    let check: HealthCheck
    private let health: [UpstreamHealth]
    private let group: any EventLoopGroup
    private let logger: Logger
    private let prober = Mutex<UpstreamProber?>(nil)

    /// Creates a pool of `members`, all up, checked as `check` says; recoveries without probes are timed on `group`.
    public init(members: [Member], check: HealthCheck, group: any EventLoopGroup, logger: Logger) {
        self.members = members
        self.check = check
        self.health = members.map { _ in UpstreamHealth() }
        self.group = group
        self.logger = logger
    }

    deinit {
        _ = prober.withLock { $0 }?.stop()
    }

    /// Starts the active health check, when `probe` is not `none`; once.
    public func startProbing() {
        guard let probe = UpstreamProbe(rawValue: check.probe.rawValue) else { return }
        let started = UpstreamProber(
            probe: probe,
            upstreams: members.map(\.endpoint),
            interval: check.interval,
            timeout: check.timeout,
            eventLoop: group.next(),
            logger: logger,
            report: { [weak self] result in self?.recordProbe(result.upstream, roundTrip: result.roundTrip) }
        )
        let installed = prober.withLock { current -> Bool in
            guard current == nil else { return false }
            current = started
            return true
        }
        if installed { started.start() }
    }

    /// Whether upstream `index` is up: one atomic load.
    @inline(__always)
    public func isUp(_ index: Int) -> Bool {
        health[index].up.load(ordering: .relaxed)
    }

    /// The first upstream that is up, in order of preference, after `skipping` leading ones; `nil` when none is.
    public func firstUp(after skipping: Int = -1) -> Int? {
        var index = max(skipping + 1, 0)
        while index < health.count {
            if health[index].up.load(ordering: .relaxed) { return index }
            index += 1
        }
        return nil
    }

    /// A session or relay to upstream `index` opened.
    func sessionOpened(_ index: Int) {
        health[index].sessions.wrappingAdd(1, ordering: .relaxed)
    }

    /// A session or relay to upstream `index` ended.
    func sessionEnded(_ index: Int) {
        health[index].sessions.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Traffic found upstream `index` failing hard (an ICMP error, a refused or timed-out connect): counted, and the
    /// upstream is down at once. Without probes it is up again after `interval`; with probes, after `rise` good ones.
    ///
    /// A lone upstream without probes is never marked down: there is nowhere else to send, and dropping requests
    /// for an `interval` would only make a restarting upstream look down for longer than it is (the failure is
    /// still counted).
    public func markDown(_ index: Int, because reason: @autoclosure () -> String) {
        let upstream = health[index]
        upstream.failures.wrappingAdd(1, ordering: .relaxed)
        upstream.goodProbes.store(0, ordering: .relaxed)
        guard check.probe != .none || members.count > 1 else { return }
        guard upstream.up.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged else {
            return
        }
        logger.warning(
            "upstream down",
            metadata: ["upstream": "\(members[index].endpoint)", "reason": "\(reason())", "probe": "\(check.probe)"]
        )
        guard check.probe == .none else { return }
        let delay = TimeAmount.nanoseconds(check.interval.saturatingNanoseconds)
        let logger = self.logger
        let endpoint = members[index].endpoint
        group.next().scheduleTask(in: delay) {
            if upstream.up.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                logger.notice("upstream up again", metadata: ["upstream": "\(endpoint)", "after": "interval"])
            }
        }
    }

    /// A probe of upstream `index` ended: answered after `roundTrip`, or not at all (`nil`). After `fall` failures
    /// in a row the upstream is down; after `rise` answers in a row it is up.
    public func recordProbe(_ index: Int, roundTrip: Duration?) {
        guard health.indices.contains(index) else { return }
        let upstream = health[index]
        guard let roundTrip else {
            upstream.failures.wrappingAdd(1, ordering: .relaxed)
            upstream.goodProbes.store(0, ordering: .relaxed)
            let failed = upstream.failedProbes.wrappingAdd(1, ordering: .relaxed).newValue
            if failed >= check.fall,
                upstream.up.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged
            {
                logger.warning(
                    "upstream down",
                    metadata: ["upstream": "\(members[index].endpoint)", "reason": "\(failed) probes unanswered"]
                )
            }
            return
        }
        upstream.probeRoundTrip.store(roundTrip.saturatingNanoseconds, ordering: .relaxed)
        upstream.failedProbes.store(0, ordering: .relaxed)
        let good = upstream.goodProbes.wrappingAdd(1, ordering: .relaxed).newValue
        if good >= check.rise,
            upstream.up.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        {
            logger.notice(
                "upstream up again",
                metadata: ["upstream": "\(members[index].endpoint)", "after": "\(good) probes answered"]
            )
        }
    }

    /// Each upstream's state now, in order of preference.
    public func snapshot() -> [Snapshot] {
        zip(members, health).map { member, upstream in
            let roundTrip = upstream.probeRoundTrip.load(ordering: .relaxed)
            return Snapshot(
                endpoint: member.endpoint,
                isUp: upstream.up.load(ordering: .relaxed),
                sessions: max(0, upstream.sessions.load(ordering: .relaxed)),
                failures: upstream.failures.load(ordering: .relaxed),
                probeRoundTrip: roundTrip < 0 ? nil : .nanoseconds(roundTrip)
            )
        }
    }
}

/// One upstream's health: whether it is up, and the figures behind it.
///
/// `Sendable`: every field is an atomic. Probe results arrive on one event loop, traffic failures on any thread: a
/// race between them costs at most one probe's worth of delay, never a wrong state for good.
final class UpstreamHealth: Sendable {
    let up = Atomic<Bool>(true)
    let sessions = Atomic<Int>(0)
    let failures = Atomic<UInt64>(0)
    let goodProbes = Atomic<Int>(0)
    let failedProbes = Atomic<Int>(0)
    /// Nanoseconds; -1 before the first good probe.
    let probeRoundTrip = Atomic<Int64>(-1)
}
