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
            SIGTERM and SIGINT stop it: listeners close, TCP connections get 10 seconds to finish, exit status 0.

            Exit status: 0 after a clean shutdown or a valid --check; 1 when the configuration is invalid or a \
            listener cannot be bound.

            Environment: UDPD_TESTING_WITHOUT_PKTINFO=1 opens wildcard UDP sockets without IP_PKTINFO, \
            IP_RECVDSTADDR and IPV6_RECVPKTINFO, reproducing a platform that lacks them (a testing aid). \
            NOTIFY_SOCKET is honoured as systemd sets it. Sockets handed over by systemd socket activation \
            (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) are adopted by the listener whose protocol, address and port \
            they match; the others are logged and closed.
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
        // The one unstructured task of udpd: the bridge from the synchronous main thread into async code.
        Task.detached {
            do {
                try await command.serve(configuration)
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

    func serve(_ configuration: Configuration) async throws {
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
        let inherited: [InheritedSocket]
        switch SocketActivation.takeInheritedSockets(environment: environment) {
        case .success(let sockets):
            inherited = sockets
            if !sockets.isEmpty {
                logger.info("systemd handed over sockets", metadata: ["count": "\(sockets.count)"])
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
                    logger: logger
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
                logger: logger
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
                let binder = try await PrivilegedBinder.drop(to: privilegeTarget)
                await supervisor.bindOn(binder)
                ProcessRunner.noteDroppedFromRoot()
                logger.notice(
                    "dropped privileges",
                    metadata: [
                        "user": "\(configuration.user ?? "-")", "uid": "\(getuid())", "gid": "\(getgid())",
                        "kept": .string(
                            "CAP_NET_BIND_SERVICE on the binder thread; CAP_SETUID, CAP_SETGID, CAP_SETPCAP, "
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

        let daemon = Daemon(
            supervisor: supervisor,
            controlServer: controlServer,
            metricsServer: metricsServer,
            hangups: hangups,
            notifier: SystemdNotifier(),
            logLevel: logLevel,
            logger: logger
        )
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [ServiceGroupConfiguration.ServiceConfiguration(service: daemon)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await serviceGroup.run()
    }
}

/// Writes one line to standard error.
func printError(_ line: String) {
    writeToStandardError(TextEscaping.escaped(line) + "\n")
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
