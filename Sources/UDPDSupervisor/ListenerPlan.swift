import CUDPD
import UDPDConfig
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The transport protocol of a listener.
public enum ListenerProtocol: String, Sendable, Hashable, Comparable {
    case udp, tcp

    public static func < (lhs: ListenerProtocol, rhs: ListenerProtocol) -> Bool { lhs.rawValue > rhs.rawValue }
}

/// What identifies a listener across reloads: its protocol, address, port and (for a wildcard socket bound to one
/// interface) device. A listener whose key is in both the old and the new configuration keeps its open socket,
/// whatever else changes.
public struct ListenerKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// UDP or TCP.
    public var proto: ListenerProtocol
    /// The local address and port.
    public var endpoint: IPEndpoint
    /// The interface the socket is bound to (SO_BINDTODEVICE), for a wildcard socket limited by `interfaces`.
    public var device: String?

    /// Creates a key.
    public init(proto: ListenerProtocol, endpoint: IPEndpoint, device: String? = nil) {
        self.proto = proto
        self.endpoint = endpoint
        self.device = device
    }

    /// `udp 127.0.0.1:7`, or `udp 0.0.0.0:7 on eth0`.
    public var description: String {
        "\(proto.rawValue) \(endpoint)" + (device.map { " on \($0)" } ?? "")
    }

    public static func < (lhs: ListenerKey, rhs: ListenerKey) -> Bool {
        if lhs.proto != rhs.proto { return lhs.proto < rhs.proto }
        if lhs.endpoint.family != rhs.endpoint.family { return lhs.endpoint.family == .ipv4 }
        if lhs.endpoint.port != rhs.endpoint.port { return lhs.endpoint.port < rhs.endpoint.port }
        if lhs.endpoint.addressText != rhs.endpoint.addressText {
            return lhs.endpoint.addressText < rhs.endpoint.addressText
        }
        return (lhs.device ?? "") < (rhs.device ?? "")
    }
}

/// One listener a configuration asks for: which service it serves, where, and with which socket options.
struct PlannedListener: Sendable {
    var key: ListenerKey
    var service: String
    var options: ListenerSocketOptions
    /// UDP sockets (and worker threads) serving the port; 1 for TCP.
    var workers: Int
    /// Whether the listener exists because an address is on the host now (`bind: per-address`, or a wildcard
    /// service served per address for want of pktinfo): it comes and goes with its address, and its bind may fail
    /// for a while with EADDRNOTAVAIL (a tentative IPv6 address) without that being an error.
    var followsAddresses: Bool
}

/// What the plan depends on besides the configuration: the host's addresses now, and where pktinfo works.
struct HostBindings: Sendable {
    /// The host's addresses, as ``InterfaceAddresses/current()`` read them last.
    var addresses: [InterfaceAddress]
    /// The families whose wildcard UDP sockets can learn each datagram's destination address.
    var destinationInfo: Set<IPFamily>
    /// IPv6 wildcard listeners served by an adopted dual-stack socket (systemd's `BindIPv6Only=both`): each serves
    /// IPv4 on its port too, so the IPv4 wildcard listener of the same service, protocol, port and device is not
    /// planned (it could not be bound beside it).
    var dualStack: Set<ListenerKey> = []
}

extension Configuration {
    /// Every listener this configuration asks for on a host with `host`'s addresses, in service order.
    func plannedListeners(on host: HostBindings) -> [PlannedListener] {
        var planned: [PlannedListener] = []
        for service in services {
            for address in service.listenAddresses(on: host) {
                let options = ListenerSocketOptions(freebind: service.freebind, device: address.device)
                let protocols: [(ListenerProtocol, [UInt16])] = [(.udp, service.udpPorts), (.tcp, service.tcpPorts)]
                for (proto, ports) in protocols where address.protocols.contains(proto) {
                    for port in ports {
                        var endpoint = address.endpoint
                        endpoint.port = port
                        planned.append(
                            PlannedListener(
                                key: ListenerKey(proto: proto, endpoint: endpoint, device: address.device),
                                service: service.name,
                                options: options,
                                workers: proto == .udp ? service.workers ?? UDPWorkerPool.defaultThreadCount : 1,
                                followsAddresses: address.followsAddresses
                            )
                        )
                    }
                }
            }
        }
        guard !host.dualStack.isEmpty else { return planned }
        let servedDualStack = Set(planned.filter { host.dualStack.contains($0.key) }.map { "\($0.service) \($0.key)" })
        return planned.filter { plan in
            guard plan.key.endpoint.family == .ipv4, plan.key.endpoint.isWildcard else { return true }
            let twin = ListenerKey(
                proto: plan.key.proto,
                endpoint: .wildcard(.ipv6, port: plan.key.endpoint.port),
                device: plan.key.device
            )
            return !servedDualStack.contains("\(plan.service) \(twin)")
        }
    }
}

/// One local address a service binds, for some of its protocols.
struct ListenAddress {
    var endpoint: IPEndpoint
    var device: String?
    var protocols: Set<ListenerProtocol>
    var followsAddresses: Bool
}

extension ServiceDefinition {
    /// Whether the service's UDP ports are served per address because a wildcard socket of one of its families
    /// cannot learn destination addresses on this host (the automatic fallback).
    func fallsBack(on host: HostBindings) -> Bool {
        bind == .wildcard && !udpPorts.isEmpty
            && family.families.contains { !host.destinationInfo.contains($0.transportFamily) }
    }

    /// The local addresses (port 0) the service binds under its bind policy, families and interfaces.
    func listenAddresses(on host: HostBindings) -> [ListenAddress] {
        switch bind {
        case .wildcard:
            var result: [ListenAddress] = []
            for family in family.families.map(\.transportFamily) {
                let fallback = !udpPorts.isEmpty && !host.destinationInfo.contains(family)
                let wildcardProtocols: Set<ListenerProtocol> = fallback ? [.tcp] : [.udp, .tcp]
                let devices: [String?] = interfaces.isEmpty ? [nil] : interfaces
                for device in devices {
                    result.append(
                        ListenAddress(
                            endpoint: .wildcard(family, port: 0),
                            device: device,
                            protocols: wildcardProtocols,
                            followsAddresses: false
                        )
                    )
                }
                if fallback {
                    result += localAddresses(on: host, family: family).map {
                        ListenAddress(endpoint: $0, device: nil, protocols: [.udp], followsAddresses: true)
                    }
                }
            }
            return result
        case .perAddress:
            return family.families.flatMap { localAddresses(on: host, family: $0.transportFamily) }.map {
                ListenAddress(endpoint: $0, device: nil, protocols: [.udp, .tcp], followsAddresses: true)
            }
        case .addresses(let addresses):
            return addresses.map {
                ListenAddress(endpoint: IPEndpoint($0), device: nil, protocols: [.udp, .tcp], followsAddresses: false)
            }
        }
    }

    /// The host's addresses of `family` on the service's interfaces (all of them without `interfaces`), each once.
    private func localAddresses(on host: HostBindings, family: IPFamily) -> [IPEndpoint] {
        var seen: Set<IPEndpoint> = []
        return host.addresses.compactMap { address in
            guard address.endpoint.family == family, interfaces.isEmpty || interfaces.contains(address.interface),
                seen.insert(address.endpoint).inserted
            else { return nil }
            return address.endpoint
        }
    }
}

extension IPEndpoint {
    /// The address the configuration parsed, with port 0: built from its bits, never parsed again. A scope names an
    /// interface, looked up now; the configuration check refused a scope whose interface does not exist, so one that
    /// vanished since gives scope 0, which the bind then refuses with an error naming the address.
    init(_ address: BindAddress) {
        switch address.family {
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = UInt32(truncatingIfNeeded: address.bits.low).bigEndian
            self = withUnsafeBytes(of: &sin) { IPEndpoint($0.baseAddress!)! }
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { bytes in
                for (index, octet) in address.bits.ipv6Octets.enumerated() { bytes[index] = octet }
            }
            sin6.sin6_scope_id = address.scope.map { if_nametoindex($0) } ?? 0
            self = withUnsafeBytes(of: &sin6) { IPEndpoint($0.baseAddress!)! }
        }
    }
}

extension AddressFamily {
    /// The transport's name for the family.
    var transportFamily: IPFamily { self == .ipv4 ? .ipv4 : .ipv6 }
}
