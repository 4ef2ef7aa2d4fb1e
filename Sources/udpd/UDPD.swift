import ArgumentParser
import Dispatch
import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization
import UDPDConfig
import UDPDControl
import UDPDSupervisor
import UDPDTransport
import UnixSignals

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

/// `udpd`: the command line of the daemon. Everything it does lives in UDPDSupervisor; this file only parses
/// arguments, sets up logging and maps outcomes to exit codes.
@main
struct UDPD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpd",
        abstract:
            "Serve the UDP and TCP services of a YAML file, answering every datagram from the address it was sent to.",
        discussion: """
            udpd runs in the foreground and logs to standard error. SIGHUP (or `udpctl reload`) reloads the \
            configuration: the whole file is validated and every new socket bound before anything changes, \
            unchanged listeners keep their sockets, and on any error the old configuration keeps running. \
            SIGTERM and SIGINT stop it: listeners close, TCP connections get 10 seconds to finish, exit status 0. \
            SIGUSR2 (or `udpctl upgrade`) starts a new udpd (this executable as it is on disk now) with the same \
            arguments and hands it every listening socket; once it serves, this one stops reading, finishes its \
            connections, sessions and programs within the grace period, and exits 0.

            Exit status: 0 after a clean shutdown or a valid --check; 1 when the configuration is invalid or a \
            listener cannot be bound.

            Environment: UDPD_TESTING_WITHOUT_PKTINFO=1 opens wildcard UDP sockets without IP_PKTINFO, \
            IP_RECVDSTADDR and IPV6_RECVPKTINFO, reproducing a platform that lacks them (a testing aid). \
            NOTIFY_SOCKET is honoured as systemd sets it. Sockets handed over by systemd socket activation \
            (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) are adopted by the listener whose protocol, address and port \
            they match; the others are logged and closed. With FDSTORE (systemd's FileDescriptorStoreMax=), every \
            listening socket is kept in systemd's descriptor store, so that a restart closes none.
            """,
        version: Supervisor.version
    )

    @Option(
        name: [.customShort("c"), .customLong("config")],
        help: ArgumentHelp(
            "The YAML configuration file.",
            valueName: "file"
        )
    )
    var config: String

    @Flag(name: .long, help: "Validate the configuration (syntax, schema, conflicts), bind nothing, and exit.")
    var check = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The control socket's path, overriding control.socket.",
            valueName: "path"
        )
    )
    var controlSocket: String?

    /// Runs the daemon on the cooperative pool while the main thread waits, alive.
    ///
    /// Not `AsyncParsableCommand`: Swift's async main hands the main thread to Dispatch, which ends it with
    /// pthread_exit. The process's first thread would then be a dead thread that keeps the credentials it had
    /// (root): `ps` would show udpd as root after the drop, and the kernel checks some permissions against it.
    /// A waiting main thread takes part in glibc's setresuid broadcast like every other thread.
    func run() throws {
        // Before anything else: a write to a peer that went away (a TCP client, an exec program's stdin) must fail
        // with EPIPE where it is made, never kill the daemon, whichever part writes first.
        ignoreBrokenPipeSignal()
        // Before anything can fail: a udpd started by an upgrade reports its errors to the udpd that started it.
        let predecessor = UpgradePredecessor.fromEnvironment()
        upgradeReporter.withLock { $0 = predecessor }
        let configuration: Configuration
        do throws(ConfigurationErrors) {
            configuration = try ConfigurationLoader.load(path: config)
        } catch {
            for line in error.errors { printError(line.description) }
            throw ExitCode(1)
        }
        if check {
            print("\(config): configuration is valid (\(configuration.services.count) services)")
            return
        }
        // While the main thread is the only one: a multi-threaded process waits out an RCU grace period each time
        // its descriptor table grows, a single-threaded one does not.
        DescriptorTable.raiseOpenFileLimit()
        DescriptorTable.reserve(configuration.estimatedDescriptors)

        let outcome = Mutex<Result<Void, any Error>?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let command = self
        let upgrade = UpgradeSettings(
            executable: UpgradeSettings.ownExecutable(fallback: CommandLine.arguments[0]),
            arguments: Array(CommandLine.arguments.dropFirst()),
            predecessor: predecessor
        )
        // The one unstructured task of udpd: the bridge from the synchronous main thread into async code.
        Task.detached {
            do {
                try await command.serve(configuration, upgrade: upgrade)
                outcome.withLock { $0 = .success(()) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            finished.signal()
        }
        finished.wait()
        // Programs still running get the grace period, then their guards kill what is left (on this thread, which
        // may block; whatever remains dies with udpd anyway, as every guard watches for udpd's exit).
        ProcessRunner.finishRunningPrograms(grace: .seconds(10))
        try outcome.withLock { $0 ?? .success(()) }.get()
    }

    func serve(_ configuration: Configuration, upgrade: UpgradeSettings) async throws {
        var privilegeTarget: PrivilegeTarget?
        if configuration.user != nil || configuration.group != nil {
            do throws(PrivilegeError) {
                privilegeTarget = try PrivilegeTarget.resolve(user: configuration.user, group: configuration.group)
            } catch {
                printError("udpd: \(config): \(error)")
                throw ExitCode(1)
            }
        }

        let logLevel = DaemonLogLevel(Logger.Level(configuration.log.level))
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, level: logLevel) }
        let logger = Logger(label: "udpd")
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let upgradeSignals = await UnixSignalsSequence(trapping: .sigusr2)
        let environment = ProcessInfo.processInfo.environment
        let group = MultiThreadedEventLoopGroup.singleton

        let pool: UDPWorkerPool
        do {
            pool = try UDPWorkerPool(
                threadCount: UDPWorkerPool.defaultThreadCount,
                settings: UDPWorkerSettings(batchSize: configuration.batchSize)
            )
        } catch {
            printError("udpd: cannot start UDP worker threads: \(error)")
            throw ExitCode(1)
        }
        var inherited: [InheritedSocket]
        var inheritedMetrics: SocketDescriptor?
        switch SocketActivation.takeInheritedSockets(environment: environment) {
        case .success(let sockets):
            // The readiness pipe is the predecessor's (already taken); the metrics socket is the endpoint's.
            inherited = sockets.filter { socket in
                switch socket.name {
                case SocketActivation.readinessName? where upgrade.predecessor != nil:
                    _ = socket.descriptor.release()
                    return false
                case SocketActivation.metricsName?:
                    inheritedMetrics = socket.descriptor
                    return false
                default:
                    return true
                }
            }
            if !sockets.isEmpty {
                let from = upgrade.predecessor.map { "udpd pid \($0.pid)" } ?? "systemd"
                logger.info("sockets handed over", metadata: ["count": "\(inherited.count)", "from": "\(from)"])
            }
        case .failure(let refusal):
            logger.warning("socket activation: \(refusal)")
            inherited = []
        }
        let supervisor = Supervisor(
            configuration: configuration,
            configPath: config,
            group: group,
            pool: pool,
            logger: logger,
            withoutDestinationInfo: environment["UDPD_TESTING_WITHOUT_PKTINFO"] == "1",
            inherited: inherited
        )
        ProcessRunner.reportSpawnerLosses { logger.warning("\($0)") }
        let notifier = SystemdNotifier()
        await supervisor.useDescriptorStore(notifier)
        do throws(SupervisorError) {
            try await supervisor.start()
        } catch {
            for line in error.messages { printError("udpd: \(line)") }
            throw ExitCode(1)
        }

        var metricsServer: MetricsHTTPServer?
        if let metrics = configuration.metrics {
            do {
                metricsServer = try await MetricsHTTPServer.bind(
                    host: metrics.listen.host,
                    port: Int(metrics.listen.port),
                    group: group,
                    logger: logger,
                    inherited: inheritedMetrics
                )
            } catch {
                printError("udpd: \(error)")  // MetricsEndpointError names the endpoint
                await supervisor.stopAll(grace: .zero)
                throw ExitCode(1)
            }
        }

        let socketPath = controlSocket ?? configuration.control.socket ?? ControlSocketPath.defaultPath()
        let controlServer: ControlServer
        do {
            controlServer = try await ControlServer.bind(
                path: socketPath,
                mode: configuration.control.mode ?? 0o600,
                runAs: privilegeTarget.map { ProcessIdentity(uid: $0.uid ?? UInt32(geteuid()), gid: $0.gid) },
                group: group,
                logger: logger,
                takingOver: upgrade.predecessor != nil
            )
        } catch {
            printError("udpd: control socket \(socketPath): \(error)")
            await supervisor.stopAll(grace: .zero)
            throw ExitCode(1)
        }

        if let privilegeTarget {
            do throws(PrivilegeError) {
                // Programs are started by the program spawner, forked now (if no exec service did already) while
                // udpd is still privileged: it keeps what starting them as their own user takes, even for an exec
                // service a reload adds later, and udpd keeps none of it.
                _ = try? ProcessRunner.shared()
                let transparent = configuration.services.contains { $0.transparent }
                let binder = try await PrivilegedBinder.drop(to: privilegeTarget, keepingNetRaw: transparent)
                await supervisor.bindOn(binder)
                ProcessRunner.noteDroppedFromRoot()
                logger.notice(
                    "dropped privileges",
                    metadata: [
                        "user": "\(configuration.user ?? "-")", "uid": "\(getuid())", "gid": "\(getgid())",
                        "kept": .string(
                            "CAP_NET_BIND_SERVICE\(transparent ? " and CAP_NET_RAW" : "") on the binder thread; "
                                + "CAP_SETUID, CAP_SETGID, CAP_SETPCAP, "
                                + "CAP_KILL in the program spawner"
                        ),
                    ]
                )
            } catch {
                printError("udpd: \(error)")
                await supervisor.stopAll(grace: .zero)
                throw ExitCode(1)
            }
        }
        await supervisor.reportTransparentCapability()

        let daemon = Daemon(
            supervisor: supervisor,
            controlServer: controlServer,
            metricsServer: metricsServer,
            hangups: hangups,
            notifier: notifier,
            logLevel: logLevel,
            logger: logger,
            upgrade: upgrade,
            upgradeSignals: upgradeSignals
        )
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    // The daemon returns by itself after handing over to the udpd of an upgrade: a clean stop.
                    ServiceGroupConfiguration.ServiceConfiguration(
                        service: daemon,
                        successTerminationBehavior: .gracefullyShutdownGroup
                    )
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await serviceGroup.run()
    }
}

/// The udpd that started this one for an upgrade, which hears every error line too (`udpctl upgrade` prints them).
let upgradeReporter = Mutex<UpgradePredecessor?>(nil)

/// Writes one line to standard error (and to the udpd being upgraded, if any).
func printError(_ line: String) {
    writeToStandardError(TextEscaping.escaped(line) + "\n")
    upgradeReporter.withLock { $0?.report(error: TextEscaping.escaped(line)) }
}

extension UpgradePredecessor {
    /// The predecessor announced to this process: `UDPD_UPGRADE_FROM` names the parent process and
    /// `LISTEN_FDNAMES` has an `upgrade-ready` descriptor; `nil` otherwise.
    static func fromEnvironment() -> UpgradePredecessor? {
        let environment = ProcessInfo.processInfo.environment
        guard let parent = environment[SocketActivation.upgradeVariable].flatMap({ Int32($0) }), parent == getppid(),
            let names = environment["LISTEN_FDNAMES"]?.split(separator: ":", omittingEmptySubsequences: false),
            let index = names.firstIndex(of: Substring(SocketActivation.readinessName)),
            Int(environment["LISTEN_FDS"] ?? "") == names.count
        else { return nil }
        return UpgradePredecessor(pid: parent, descriptor: SocketActivation.firstDescriptor + CInt(index))
    }
}

extension Configuration {
    /// About how many descriptors the listeners will take: every worker socket of every port on each address (or
    /// family) a service names, and a margin for the control socket, metrics, inherited sockets and the first
    /// connections. Per-address services are counted as one address per family; a reload grows the table later.
    fileprivate var estimatedDescriptors: Int {
        var count = 64
        for service in services {
            let addresses: Int
            switch service.bind {
            case .addresses(let list): addresses = list.count
            case .wildcard, .perAddress: addresses = service.family.families.count
            }
            let workers = service.workers ?? UDPWorkerPool.defaultThreadCount
            // Saturating: the numbers come from the configuration, and an estimate must never be what traps.
            let udp = service.udpPorts.count.multipliedReportingOverflow(by: workers)
            let perAddress = udp.partialValue.addingReportingOverflow(service.tcpPorts.count)
            let sockets = addresses.multipliedReportingOverflow(by: perAddress.partialValue)
            let sum = count.addingReportingOverflow(sockets.partialValue)
            if udp.overflow || perAddress.overflow || sockets.overflow || sum.overflow { return Int(CInt.max) }
            count = sum.partialValue
        }
        return count
    }
}
