import Logging
import ServiceLifecycle
import Synchronization
import UDPDConfig
import UDPDControl
import UDPDServices
import UDPDTransport
import UnixSignals

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The running daemon as a swift-service-lifecycle service: it answers the control socket, turns SIGHUP and
/// `udpctl reload` into one queue of reloads, lets the supervisor follow the host's addresses, drains the
/// connections of removed TCP listeners, and on graceful shutdown (SIGTERM, SIGINT) stops every listener within the
/// grace period.
///
/// Stop and reload are ordered: when the stop begins, the reload under way completes (or is abandoned before it
/// changes anything), every reload still queued is answered "udpd is stopping", and only then do the listeners
/// stop; nothing starts after that.
///
/// Upgrades (`udpctl upgrade`, SIGUSR2) wait in the same queue as reloads. An upgrade whose new udpd serves stops
/// this one as a graceful shutdown does, except that the sockets the new one shares are never closed while it
/// could still miss a datagram, and systemd is told nothing (the new udpd sent `MAINPID=`).
///
/// `Sendable`: every stored property is immutable and `Sendable`.
public struct Daemon: Service {
    /// One reload or upgrade request, and who waits for its outcome (nobody, for SIGHUP and SIGUSR2).
    enum ReloadTicket: Sendable {
        case reload(reply: CheckedContinuation<ReloadReport, Never>?)
        case upgrade(binary: String?, reply: CheckedContinuation<ControlResponse, Never>?)
    }

    let supervisor: Supervisor
    let controlServer: ControlServer
    let metricsServer: MetricsHTTPServer?
    let hangups: UnixSignalsSequence
    let notifier: SystemdNotifier
    let logLevel: DaemonLogLevel
    let logger: Logger
    let grace: Duration
    let upgrade: UpgradeSettings?
    let upgradeSignals: UnixSignalsSequence?

    /// Creates the daemon around a started supervisor, a bound control socket and, when `metrics.listen` is
    /// configured, a bound HTTP metrics endpoint.
    ///
    /// `hangups` must be created before the control socket answers, so that a SIGHUP sent as soon as udpd looks
    /// ready reloads instead of killing it; so must `upgradeSignals` (SIGUSR2). Without `upgrade`, upgrades are
    /// refused.
    public init(
        supervisor: Supervisor,
        controlServer: ControlServer,
        metricsServer: MetricsHTTPServer? = nil,
        hangups: UnixSignalsSequence,
        notifier: SystemdNotifier,
        logLevel: DaemonLogLevel,
        logger: Logger,
        grace: Duration = .seconds(10),
        upgrade: UpgradeSettings? = nil,
        upgradeSignals: UnixSignalsSequence? = nil
    ) {
        self.supervisor = supervisor
        self.controlServer = controlServer
        self.metricsServer = metricsServer
        self.hangups = hangups
        self.notifier = notifier
        self.logLevel = logLevel
        self.logger = logger
        self.grace = grace
        self.upgrade = upgrade
        self.upgradeSignals = upgradeSignals
    }

    public func run() async throws {
        let (reloads, requestReload) = AsyncStream.makeStream(of: ReloadTicket.self)
        let answering = ControlRequestsInFlight()
        let (handovers, handedOver) = AsyncStream.makeStream(of: Void.self)
        let (handoversForMetrics, metricsHandedOver) = AsyncStream.makeStream(of: Void.self)
        if let predecessor = upgrade?.predecessor {
            do {
                try controlServer.takeOverPath()
            } catch {
                predecessor.report(error: "\(error)")
                throw error
            }
            notifier.readyAsMainProcess()
            predecessor.reportReady()
            logger.notice("udpd is serving", metadata: ["generation": "1", "upgraded_from": "\(predecessor.pid)"])
        } else {
            notifier.ready()
            logger.notice("udpd is serving", metadata: ["generation": "1"])
        }
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
                        // After an upgrade the new udpd answers on the shared socket: this one stops accepting.
                        try await Self.untilHandedOver(handoversForMetrics) {
                            try await metricsServer.run { PrometheusExposition.render(await status()) }
                        }
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
                    requestReload.yield(.reload(reply: nil))
                }
            }
            if let upgradeSignals {
                group.addTask {
                    for await _ in upgradeSignals {
                        logger.notice("SIGUSR2: upgrading")
                        requestReload.yield(.upgrade(binary: nil, reply: nil))
                    }
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
                if await Self.stopRequest(handovers) {
                    logger.notice("upgrade: the new udpd serves; stopping", metadata: ["grace": "\(grace)"])
                } else {
                    logger.notice("shutting down", metadata: ["grace": "\(grace)"])
                    notifier.stopping()
                }
                // Reloads still queued are answered "udpd is stopping"; the stream ends after them.
                await supervisor.beginStopping()
                requestReload.finish()
            }
            // The reload queue, one at a time, until the stop ends it: every ticket taken gets its answer.
            var upgraded = false
            for await ticket in reloads {
                switch ticket {
                case .reload(let reply):
                    let report = await performReload()
                    reply?.resume(returning: report)
                case .upgrade(let binary, let reply):
                    let response = await performUpgrade(binary: binary)
                    upgraded = upgraded || response.ok
                    reply?.resume(returning: response)
                    if response.ok {
                        handedOver.yield()
                        metricsHandedOver.yield()
                    }
                }
            }
            if upgraded {
                await supervisor.handOver(grace: grace)
            } else {
                await supervisor.stopAll(grace: grace)
            }
            await answering.finish()
            group.cancelAll()
        }
        logger.notice("udpd stopped")
    }

    /// The supervisor's status, with the control socket's own figures and the pid this udpd took over from.
    private func status() async -> StatusReport {
        var report = await supervisor.status()
        report.control = controlServer.counts
        report.upgradedFrom = upgrade?.predecessor?.pid
        return report
    }

    /// Waits for the first reason to stop: a graceful shutdown (SIGTERM, SIGINT), or a completed upgrade (`true`).
    private static func stopRequest(_ handovers: AsyncStream<Void>) async -> Bool {
        await withTaskGroup(of: Bool.self) { race in
            race.addTask {
                try? await gracefulShutdown()
                return false
            }
            race.addTask {
                for await _ in handovers { return true }
                return false
            }
            let first = await race.next() ?? false
            race.cancelAll()
            return first
        }
    }

    /// Runs `body` until it returns, or until a handover is announced on `handovers`, which cancels it.
    private static func untilHandedOver(
        _ handovers: AsyncStream<Void>,
        _ body: @escaping @Sendable () async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { race in
            race.addTask { try await body() }
            // The stream is never finished: this ends with a handover, or with the cancellation of the whole.
            race.addTask {
                for await _ in handovers { return }
            }
            try await race.next()
            race.cancelAll()
        }
    }

    /// Starts the new udpd with every listening socket (and the metrics endpoint's) and waits until it serves.
    private func performUpgrade(binary: String?) async -> ControlResponse {
        guard let upgrade else { return .failure("this udpd cannot be upgraded") }
        let executable = binary ?? upgrade.executable
        var extra: [HandedOverDescriptor] = []
        if let metricsServer {
            extra.append(
                HandedOverDescriptor(
                    name: SocketActivation.metricsName,
                    descriptor: metricsServer.listeningSocket.descriptor.rawValue
                )
            )
        }
        let outcome = await supervisor.upgrade(
            executable: executable,
            arguments: upgrade.arguments,
            extra: extra,
            environment: ProcessInfo.processInfo.environment,
            deadline: upgrade.deadline
        )
        switch outcome {
        case .success(let pid):
            logger.notice("upgrade: the new udpd serves", metadata: ["pid": "\(pid)", "executable": "\(executable)"])
            return ControlResponse(ok: true, upgrade: UpgradeReport(pid: pid, previousPID: getpid()))
        case .failure(let failure):
            logger.error(
                "upgrade failed; this udpd serves on",
                metadata: ["executable": "\(executable)", "reason": "\(failure)"]
            )
            return .failure("\(failure)")
        }
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
                if case .terminated = requestReload.yield(.reload(reply: continuation)) {
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
        case .upgrade:
            logger.notice(
                "upgrade requested over the control socket",
                metadata: ["uid": "\(peer.uid.map { "\($0)" } ?? "?")", "binary": "\(request.binary ?? "-")"]
            )
            return await withCheckedContinuation { continuation in
                if case .terminated = requestReload.yield(.upgrade(binary: request.binary, reply: continuation)) {
                    continuation.resume(returning: .failure("udpd is stopping"))
                }
            }
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
