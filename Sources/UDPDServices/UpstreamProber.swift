import Logging
import NIOCore
import NIOPosix
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What an active health check sends.
public enum UpstreamProbe: String, Sendable {
    /// A Kerberos AS-REQ for a principal that cannot exist; any KRB-ERROR or AS-REP is a good answer.
    case krb5
    /// A DNS query for `. NS`; any response with the query's ID is a good answer.
    case dns
}

/// One probe's result for the upstream at `upstream` (its index in the list the prober was given).
public struct UpstreamProbeResult: Sendable, Equatable {
    /// The upstream's index in the list the prober was given.
    public var upstream: Int
    /// The round trip of a good answer; nil when no good answer came within the timeout (or sending failed).
    public var roundTrip: Duration?

    /// Creates a result.
    public init(upstream: Int, roundTrip: Duration?) {
        self.upstream = upstream
        self.roundTrip = roundTrip
    }
}

/// Probes a list of upstreams every `interval`, on `eventLoop`; calls `report` once per probe (on the event loop).
///
/// Each probe is one datagram from a fresh UDP socket connected to the upstream, so only that upstream's answers
/// reach it, an ICMP error shows at once as a refusal, and no answer to an earlier probe can be taken for this
/// one. Datagrams that are not a good answer are ignored (a forged or stray one cannot fail a probe); the probe
/// fails when no good answer came within `timeout`, at once when the upstream refused it, or when the socket could
/// not be opened or the datagram not sent. At most one probe per upstream is in flight: a round skips an upstream
/// whose last probe is still waiting.
///
/// `Sendable`: its configuration is immutable, and its state lives in a box bound to `eventLoop`.
public final class UpstreamProber: Sendable {
    /// The realm of krb5 probes when none is given: a name that cannot be anyone's realm (`.invalid`, RFC 6761),
    /// and that says what the request is in the KDC's log. A KDC serving one realm answers a request for any other
    /// with a KRB-ERROR (MIT krb5kdc: KDC_ERR_C_PRINCIPAL_UNKNOWN, logged as `CLIENT_NOT_FOUND:
    /// udpd-health-probe-...@UDPD-HEALTH-PROBE.INVALID`), which is a good answer. An MIT krb5kdc started for
    /// several realms (`-r A -r B`) answers nothing for a realm it does not serve: probing it needs one of its
    /// realms.
    public static let defaultRealm = "UDPD-HEALTH-PROBE.INVALID"

    /// The shortest interval and timeout used: shorter ones (which configuration bounds exclude) are raised to it,
    /// so that a probe round can never spin the event loop.
    static let shortestPeriod: Duration = .milliseconds(1)

    let probe: UpstreamProbe
    let upstreams: [IPEndpoint]
    let interval: Duration
    let timeout: Duration
    let realm: String
    let eventLoop: any EventLoop
    let logger: Logger
    let report: @Sendable (UpstreamProbeResult) -> Void
    let state: NIOLoopBoundBox<State>

    /// Creates a prober; nothing is sent before ``start()``. `realm` is the realm krb5 probes name (the client's,
    /// and the server's `krbtgt/REALM`).
    public init(
        probe: UpstreamProbe,
        upstreams: [IPEndpoint],
        interval: Duration,
        timeout: Duration,
        eventLoop: any EventLoop,
        logger: Logger,
        realm: String = UpstreamProber.defaultRealm,
        report: @escaping @Sendable (UpstreamProbeResult) -> Void
    ) {
        self.probe = probe
        self.upstreams = upstreams
        self.interval = max(interval, Self.shortestPeriod)
        self.timeout = max(timeout, Self.shortestPeriod)
        self.realm = realm
        self.eventLoop = eventLoop
        self.logger = logger
        self.report = report
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(upstreams: upstreams.count), eventLoop: eventLoop)
    }

    /// Starts probing: a first round at once, then one every interval. Idempotent; does nothing after ``stop()``.
    public func start() {
        eventLoop.execute { [self] in
            let state = state.value
            guard !state.started, !state.stopped else { return }
            state.started = true
            state.rounds = eventLoop.scheduleRepeatedTask(
                initialDelay: .zero,
                delay: TimeAmount(interval)
            ) { [weak self] task in
                guard let self else { return task.cancel() }
                self.probeRound()
            }
        }
    }

    /// Stops probing and closes its sockets; no report is delivered after the returned future succeeds.
    public func stop() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            let state = state.value
            state.stopped = true
            state.rounds?.cancel()
            state.rounds = nil
            var closing: [EventLoopFuture<Void>] = []
            for index in state.inFlight.indices {
                guard let attempt = state.inFlight[index] else { continue }
                state.inFlight[index] = nil
                attempt.timeout?.cancel()
                closing.append(attempt.connection.flatMap { $0.close() })
            }
            return EventLoopFuture.andAllComplete(closing, on: eventLoop)
        }
    }

    /// The prober's mutable state, touched only on its event loop.
    ///
    /// Not `Sendable`: confined to the event loop by the ``NIOLoopBoundBox`` that holds it.
    final class State {
        var started = false
        var stopped = false
        var rounds: RepeatedTask?
        /// The probe waiting for an answer, per upstream.
        var inFlight: [Attempt?]
        var nextAttempt: UInt64 = 0
        var random = SystemRandomNumberGenerator()

        init(upstreams: Int) {
            inFlight = Array(repeating: nil, count: upstreams)
        }
    }

    /// One probe in flight.
    ///
    /// Not `Sendable`: confined to the event loop with the ``State`` that holds it.
    final class Attempt {
        let id: UInt64
        let connection: EventLoopFuture<any Channel>
        var timeout: Scheduled<Void>?
        /// When the datagram was handed to the kernel.
        var sent: NIODeadline?

        init(id: UInt64, connection: EventLoopFuture<any Channel>) {
            self.id = id
            self.connection = connection
        }
    }
}
