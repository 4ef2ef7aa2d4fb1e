import Logging
import ServiceLifecycle
import Synchronization
import UDPDConfig
import UDPDControl
import UDPDServices
import UnixSignals

/// The running daemon as a swift-service-lifecycle service: it answers the control socket, turns SIGHUP and
/// `udpctl reload` into one queue of reloads, lets the supervisor follow the host's addresses, drains the
/// connections of removed TCP listeners, and on graceful shutdown (SIGTERM, SIGINT) stops every listener within the
/// grace period.
///
/// Stop and reload are ordered: when the stop begins, the reload under way completes (or is abandoned before it
/// changes anything), every reload still queued is answered "udpd is stopping", and only then do the listeners
/// stop; nothing starts after that.
///
/// `Sendable`: every stored property is immutable and `Sendable`.
public struct Daemon: Service {
    /// One reload request, and who waits for its outcome (nobody, for SIGHUP).
    struct ReloadTicket: Sendable {
        var reply: CheckedContinuation<ReloadReport, Never>?
    }

    let supervisor: Supervisor
    let controlServer: ControlServer
    let metricsServer: MetricsHTTPServer?
    let hangups: UnixSignalsSequence
    let notifier: SystemdNotifier
    let logLevel: DaemonLogLevel
    let logger: Logger
    let grace: Duration

    /// Creates the daemon around a started supervisor, a bound control socket and, when `metrics.listen` is
    /// configured, a bound HTTP metrics endpoint.
    ///
    /// `hangups` must be created before the control socket answers, so that a SIGHUP sent as soon as udpd looks
    /// ready reloads instead of killing it.
    public init(
        supervisor: Supervisor,
        controlServer: ControlServer,
        metricsServer: MetricsHTTPServer? = nil,
        hangups: UnixSignalsSequence,
        notifier: SystemdNotifier,
        logLevel: DaemonLogLevel,
        logger: Logger,
        grace: Duration = .seconds(10)
    ) {
        self.supervisor = supervisor
        self.controlServer = controlServer
        self.metricsServer = metricsServer
        self.hangups = hangups
        self.notifier = notifier
        self.logLevel = logLevel
        self.logger = logger
        self.grace = grace
    }

    public func run() async throws {
        let (reloads, requestReload) = AsyncStream.makeStream(of: ReloadTicket.self)
        let answering = ControlRequestsInFlight()
        notifier.ready()
        logger.notice("udpd is serving", metadata: ["generation": "1"])
        await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await controlServer.run { request, peer in
                        answering.count.add(1, ordering: .acquiringAndReleasing)
                        defer { answering.count.subtract(1, ordering: .acquiringAndReleasing) }
                        return await answer(request, from: peer, requestReload: requestReload)
                    }
                } catch {
                    logger.error(
                        """
                        the control socket stopped answering: udpctl status, reload and metrics cannot reach udpd \
                        until it restarts (SIGHUP still reloads, SIGTERM still stops)
                        """,
                        metadata: ["error": "\(error)"]
                    )
                }
            }
            if let metricsServer {
                group.addTask {
                    do {
                        try await metricsServer.run { PrometheusExposition.render(await status()) }
                    } catch {
                        logger.error(
                            "the metrics endpoint stopped answering until udpd restarts",
                            metadata: ["error": "\(error)"]
                        )
                    }
                }
            }
            group.addTask {
                for await _ in hangups {
                    logger.notice("SIGHUP: reloading")
                    requestReload.yield(ReloadTicket(reply: nil))
                }
            }
            group.addTask { await supervisor.followAddressChanges() }
            group.addTask {
                await withDiscardingTaskGroup { drains in
                    for await listener in supervisor.drainQueue {
                        drains.addTask { await listener.closeConnections(after: grace) }
                    }
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                logger.notice("shutting down", metadata: ["grace": "\(grace)"])
                notifier.stopping()
                // Reloads still queued are answered "udpd is stopping"; the stream ends after them.
                await supervisor.beginStopping()
                requestReload.finish()
            }
            // The reload queue, one at a time, until the stop ends it: every ticket taken gets its answer.
            for await ticket in reloads {
                let report = await performReload()
                ticket.reply?.resume(returning: report)
            }
            await supervisor.stopAll(grace: grace)
            await answering.finish()
            group.cancelAll()
        }
        logger.notice("udpd stopped")
    }

    /// The supervisor's status, with the control socket's own figures.
    private func status() async -> StatusReport {
        var report = await supervisor.status()
        report.control = controlServer.counts
        return report
    }

    private func performReload() async -> ReloadReport {
        // Once systemd was told STOPPING=1, it hears nothing of reloads refused or completed meanwhile.
        let announced = !(await supervisor.isStopping)
        if announced { notifier.reloading() }
        let report = await supervisor.reload()
        if report.ok {
            logLevel.level = Logger.Level(await supervisor.runningConfiguration.log.level)
        }
        if announced, !(await supervisor.isStopping) { notifier.ready() }
        return report
    }

    private func answer(
        _ request: ControlRequest,
        from peer: ControlPeer,
        requestReload: AsyncStream<ReloadTicket>.Continuation
    ) async -> ControlResponse {
        switch request.command {
        case .status:
            return ControlResponse(ok: true, status: await status())
        case .metrics:
            return ControlResponse(ok: true, metrics: PrometheusExposition.render(await status()))
        case .reload:
            logger.notice(
                "reload requested over the control socket",
                metadata: ["uid": "\(peer.uid.map { "\($0)" } ?? "?")"]
            )
            let report = await withCheckedContinuation { continuation in
                if case .terminated = requestReload.yield(ReloadTicket(reply: continuation)) {
                    continuation.resume(
                        returning: ReloadReport(
                            ok: false,
                            generation: 0,
                            errors: ["udpd is stopping"]
                        )
                    )
                }
            }
            return ControlResponse(ok: report.ok, error: report.ok ? nil : "reload rejected", reload: report)
        }
    }
}

/// Control requests whose answer is being computed, so that the stop cancels the control server only after each
/// has its answer (a reload rejected because udpd is stopping included) and has gone on to write it.
///
/// `Sendable`: an atomic.
final class ControlRequestsInFlight: Sendable {
    let count = Atomic<Int>(0)

    /// Waits (at most a second) until no answer is being computed, then lets the connections' tasks run once more
    /// so that the last answers reach their sockets before the server is cancelled.
    func finish() async {
        var waited = 0
        while count.load(ordering: .acquiring) > 0, waited < 200 {
            try? await Task.sleep(for: .milliseconds(5))
            waited += 1
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

extension Logger.Level {
    /// The swift-log level of a configured log level.
    public init(_ level: LogLevel) {
        self = Logger.Level(rawValue: level.rawValue) ?? .info
    }
}

extension Daemon: CustomStringConvertible {
    /// The name swift-service-lifecycle gives the service in its log metadata. Without it, the service group
    /// formats the whole struct by reflection when it is configured: about 2 ms of start-up spent on a name.
    public var description: String { "udpd" }
}
