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
    public func status() -> StatusReport {
        let byService = Dictionary(grouping: listeners.values, by: \.service)
        let services = configuration.services.map { service -> ServiceStatus in
            let entries = (byService[service.name] ?? []).sorted { $0.listener.key < $1.listener.key }
            let total = entries.reduce(retiredCounters[service.name] ?? ListenerCountersSnapshot()) {
                $0 + $1.listener.counters.snapshot()
            }
            return ServiceStatus(
                name: service.name,
                handler: service.handler.rawValue,
                listeners: entries.map { entry in
                    ListenerStatus(
                        proto: entry.listener.key.proto.rawValue,
                        address: entry.listener.key.endpoint.addressText,
                        port: Int(entry.listener.key.endpoint.port),
                        replySource: entry.listener.replySource.rawValue,
                        interface: entry.listener.key.device,
                        counters: ServiceCounters(entry.listener.counters.snapshot())
                    )
                },
                counters: ServiceCounters(total),
                bindFallback: service.fallsBack(on: host) ? true : nil,
                forwardSessions: handlers[service.name]?.activity.forwardSessions.map { UInt64($0()) },
                execInstances: handlers[service.name]?.activity.execInstances.map { UInt64($0()) }
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
            reloads: reloadCounts
        )
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
