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

extension Supervisor {
    /// The version udpd reports in status.
    public static let version = UDPDVersion.string

    /// The daemon's state now, as `udpctl status` shows it.
    ///
    /// Each listener's counters are read once, for its own line and its service's total; services are read in
    /// place rather than copied, and each service's handlers are looked up once.
    public func status() -> StatusReport {
        var byService: [String: [RunningListener]] = [:]
        byService.reserveCapacity(configuration.services.count)
        for entry in listeners.values { byService[entry.service, default: []].append(entry.listener) }
        var services: [ServiceStatus] = []
        services.reserveCapacity(configuration.services.count)
        for index in configuration.services.indices {
            let name = configuration.services[index].name
            var running = byService[name] ?? []
            if running.count > 1 { running.sort { $0.key < $1.key } }
            var total = retiredCounters[name] ?? ListenerCountersSnapshot()
            var listenerStatuses: [ListenerStatus] = []
            listenerStatuses.reserveCapacity(running.count)
            for listener in running {
                let snapshot = listener.counters.snapshot()
                total = total + snapshot
                listenerStatuses.append(
                    ListenerStatus(
                        proto: listener.key.proto.rawValue,
                        address: listener.key.endpoint.addressText,
                        port: Int(listener.key.endpoint.port),
                        replySource: listener.replySource.rawValue,
                        interface: listener.key.device,
                        dualStack: host.dualStack.contains(listener.key) ? true : nil,
                        counters: ServiceCounters(snapshot)
                    )
                )
            }
            let activity = handlers[name]?.activity
            services.append(
                ServiceStatus(
                    name: name,
                    handler: configuration.services[index].handler.rawValue,
                    listeners: listenerStatuses,
                    counters: ServiceCounters(total),
                    bindFallback: configuration.services[index].fallsBack(on: host) ? true : nil,
                    forwardSessions: activity?.forwardSessions.map(UInt64.init),
                    execInstances: activity?.execInstances.map { UInt64($0()) },
                    upstreams: activity?.upstreams.map(Self.upstreamStatuses)
                )
            )
        }
        return StatusReport(
            generation: generation,
            config: configPath,
            pid: getpid(),
            version: Self.version,
            startedAt: Self.timestamp(startedAt),
            uptimeSeconds: Double((ContinuousClock.now - startedInstant).components.seconds),
            lastReload: lastReload,
            services: services,
            reloads: reloadCounts,
            batchSize: pool.batchSize
        )
    }
}

extension Supervisor {
    /// The status form of a forward's upstreams.
    static func upstreamStatuses(_ pool: UpstreamPool) -> [UpstreamStatus] {
        pool.snapshot().map { upstream in
            UpstreamStatus(
                address: upstream.endpoint.addressText,
                port: Int(upstream.endpoint.port),
                state: upstream.isUp ? "up" : "down",
                sessions: UInt64(upstream.sessions),
                failures: upstream.failures,
                probeRoundTripMilliseconds: upstream.probeRoundTrip.map { roundTrip in
                    let (seconds, attoseconds) = roundTrip.components
                    return Double(seconds) * 1000 + Double(attoseconds / 1_000_000_000) / 1_000_000
                }
            )
        }
    }
}

extension ServiceCounters {
    /// The status form of a service's summed listener counters.
    init(_ snapshot: ListenerCountersSnapshot) {
        self.init(
            rxPackets: snapshot.receivedPackets,
            txPackets: snapshot.sentPackets,
            rxBytes: snapshot.receivedBytes,
            txBytes: snapshot.sentBytes,
            dropped: snapshot.totalDrops,
            tcpAccepted: snapshot.tcpAccepted,
            tcpActive: snapshot.tcpActive,
            tcpClosed: snapshot.tcpClosed,
            drops: Self.dropsByName(snapshot.drops)
        )
    }

    /// Drop counts keyed by their names in status; an empty table (the usual case) allocates nothing.
    private static func dropsByName(_ drops: [DropReason: UInt64]) -> [String: UInt64] {
        var named: [String: UInt64] = [:]
        for (reason, count) in drops where count > 0 { named[reason.description] = count }
        return named
    }
}
