import Logging
import ServiceLifecycle
import UDPDConfig
import UDPDControl
import UDPDServices
import UnixSignals

/// The running daemon as a swift-service-lifecycle service: it answers the control socket, turns SIGHUP and
/// `udpctl reload` into one queue of reloads, drains the connections of removed TCP listeners, and on graceful
/// shutdown (SIGTERM, SIGINT) stops every listener within the grace period.
///
/// `Sendable`: every stored property is immutable and `Sendable`.
public struct Daemon: Service {
    /// One reload request, and who waits for its outcome (nobody, for SIGHUP). An address update (the host's
    /// addresses changed) goes through the same queue so that it never interleaves with a reload.
    struct ReloadTicket: Sendable {
        var reply: CheckedContinuation<ReloadReport, Never>?
        var addressesOnly = false
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
        notifier.ready()
        logger.notice("udpd is serving", metadata: ["generation": "1"])
        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await controlServer.run { request, peer in
                    await answer(request, from: peer, requestReload: requestReload)
                }
            }
            if let metricsServer {
                group.addTask {
                    try? await metricsServer.run { PrometheusExposition.render(await status()) }
                }
            }
            group.addTask {
                for await _ in hangups {
                    logger.notice("SIGHUP: reloading")
                    requestReload.yield(ReloadTicket(reply: nil))
                }
            }
            group.addTask {
                for await ticket in reloads {
                    let report = ticket.addressesOnly ? await supervisor.followAddresses() : await performReload()
                    ticket.reply?.resume(returning: report)
                }
            }
            group.addTask { await followAddressChanges(requestReload: requestReload) }
            group.addTask { await retryUnusableAddresses(requestReload: requestReload) }
            group.addTask {
                await withDiscardingTaskGroup { drains in
                    for await listener in supervisor.drainQueue {
                        drains.addTask { await listener.closeConnections(after: grace) }
                    }
                }
            }
            try? await gracefulShutdown()
            logger.notice("shutting down", metadata: ["grace": "\(grace)"])
            notifier.stopping()
            requestReload.finish()
            await supervisor.stopAll(grace: grace)
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
        notifier.reloading()
        let report = await supervisor.reload()
        if report.ok {
            logLevel.level = Logger.Level(await supervisor.runningConfiguration.log.level)
        }
        notifier.ready()
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
                            errors: ["udpd is shutting down"]
                        )
                    )
                }
            }
            return ControlResponse(ok: report.ok, error: report.ok ? nil : "reload rejected", reload: report)
        }
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
