import Logging
import Synchronization
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

/// An exec service's program and its limits, shared by the service's UDP and TCP handlers.
///
/// `Sendable`: the instance count is atomic; the rest is immutable.
final class ExecProgram: Sendable {
    let service: String
    let argv: [String]
    let timeout: Duration
    let maxInstances: Int
    /// The service's `user:`/`group:`; `nil` for the default (see ``ProcessIdentity/effective(explicit:)``).
    let identity: ProcessIdentity?
    let logger: Logger
    /// Programs that cannot start (out of descriptors, say) fail at the rate requests arrive: logged once a second.
    private let startFailures: RateLimitedLog
    private let running = Atomic<Int>(0)

    init(
        service: String,
        argv: [String],
        timeout: Duration,
        maxInstances: Int,
        identity: ProcessIdentity?,
        logger: Logger
    ) {
        self.service = service
        self.argv = argv
        self.timeout = timeout
        self.maxInstances = maxInstances
        self.identity = identity
        self.logger = logger
        self.startFailures = RateLimitedLog(logger: logger)
        // Started now, with the service, so that running out of descriptors later costs only the requests that
        // meet the shortage (a runner that cannot start now is tried again with the first request).
        _ = try? ProcessRunner.shared()
    }

    /// Programs of this service running now.
    public var instances: Int { running.load(ordering: .relaxed) }

    /// Runs the program for one request, or returns false (having counted the refusal) when `max-instances` are
    /// already running. `onExit` runs on the exec runner's thread once the program has been reaped.
    func run(
        proto: String,
        remote: IPEndpoint,
        local: IPEndpoint,
        input: ProcessRequest.Input,
        counters: ListenerCounters,
        onExit: @escaping @Sendable (ProcessOutcome) -> Void
    ) -> Bool {
        while true {
            let current = running.load(ordering: .relaxed)
            guard current < maxInstances else {
                counters.addDrop(.instancesExceeded)
                logger.debug("refused: max-instances reached", metadata: ["max_instances": "\(maxInstances)"])
                return false
            }
            if running.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged {
                break
            }
        }
        let logger = self.logger
        let program = argv[0]
        let timeout = self.timeout
        let request = ProcessRequest(
            argv: argv,
            environment: environment(proto: proto, remote: remote, local: local),
            input: input,
            timeout: timeout,
            identity: ProcessIdentity.effective(explicit: identity),
            onStandardError: { line in logger.notice("\(line)", metadata: ["program": "\(program)"]) },
            onExit: { outcome in
                // Only now is the program's whole tree gone: until then it counts against max-instances.
                self.running.wrappingSubtract(1, ordering: .relaxed)
                if outcome.killed > 0 { counters.addDrop(.execKilled, count: UInt64(outcome.killed)) }
                if let error = outcome.spawnError {
                    counters.addDrop(error.isDescriptorShortage ? .noDescriptor : .handlerFailed)
                    self.startFailures.warning("cannot start the program", metadata: ["error": "\(error)"])
                } else if outcome.timedOut {
                    counters.addDrop(.execTimeout)
                    logger.warning(
                        "the program ran past its timeout; it was killed with everything it started",
                        metadata: [
                            "program": "\(program)", "timeout": "\(timeout)", "killed": "\(outcome.killed)",
                        ]
                    )
                } else if outcome.killed > 0 {
                    logger.warning(
                        "the program left processes running; they were killed",
                        metadata: [
                            "program": "\(program)", "killed": "\(outcome.killed)",
                        ]
                    )
                } else if let status = outcome.waitStatus, let signal = ProcessOutcome.terminatingSignal(status) {
                    counters.addDrop(.execCrashed)
                    logger.warning(
                        "the program was killed by a signal",
                        metadata: [
                            "program": "\(program)", "signal": "\(signal)",
                        ]
                    )
                }
                onExit(outcome)
            }
        )
        ProcessRunner.run(request)
        return true
    }

    /// udpd's environment with the inetd-style description of the request on top.
    private func environment(proto: String, remote: IPEndpoint, local: IPEndpoint) -> [String] {
        var variables = ProcessInfo.processInfo.environment
        variables["UDPD_SERVICE"] = service
        variables["UDPD_PROTO"] = proto
        variables["REMOTE_ADDR"] = remote.addressText
        variables["REMOTE_PORT"] = "\(remote.port)"
        variables["LOCAL_ADDR"] = local.addressText
        variables["LOCAL_PORT"] = "\(local.port)"
        for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"] { variables[name] = nil }
        return variables.map { "\($0.key)=\($0.value)" }
    }
}
