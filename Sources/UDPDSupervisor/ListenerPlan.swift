import UDPDConfig
import UDPDTransport

/// The transport protocol of a listener.
public enum ListenerProtocol: String, Sendable, Hashable, Comparable {
    case udp, tcp

    public static func < (lhs: ListenerProtocol, rhs: ListenerProtocol) -> Bool { lhs.rawValue > rhs.rawValue }
}

/// What identifies a listener across reloads: its protocol, address and port. A listener whose key is in both the
/// old and the new configuration keeps its open socket, whatever else changes.
public struct ListenerKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// UDP or TCP.
    public var proto: ListenerProtocol
    /// The local address and port.
    public var endpoint: IPEndpoint

    /// Creates a key.
    public init(proto: ListenerProtocol, endpoint: IPEndpoint) {
        self.proto = proto
        self.endpoint = endpoint
    }

    /// `udp 127.0.0.1:7`.
    public var description: String { "\(proto.rawValue) \(endpoint)" }

    public static func < (lhs: ListenerKey, rhs: ListenerKey) -> Bool {
        if lhs.proto != rhs.proto { return lhs.proto < rhs.proto }
        if lhs.endpoint.family != rhs.endpoint.family { return lhs.endpoint.family == .ipv4 }
        if lhs.endpoint.port != rhs.endpoint.port { return lhs.endpoint.port < rhs.endpoint.port }
        return lhs.endpoint.addressText < rhs.endpoint.addressText
    }
}

/// One listener a configuration asks for: which service it serves, where, and with which socket options.
struct PlannedListener: Sendable {
    var key: ListenerKey
    var service: String
    var options: UDPSocketOptions
    /// UDP sockets (and worker threads) serving the port; 1 for TCP.
    var workers: Int
}

extension Configuration {
    /// Every listener this configuration asks for, in service order.
    ///
    /// `withoutDestinationInfo` is the testing aid that reproduces a platform without pktinfo.
    func plannedListeners(withoutDestinationInfo: Bool) -> [PlannedListener] {
        var planned: [PlannedListener] = []
        for service in services {
            let options = UDPSocketOptions(freebind: service.freebind, device: nil,
                                           withoutDestinationInfo: withoutDestinationInfo)
            let workers = service.workers ?? UDPWorkerPool.defaultThreadCount
            for address in service.listenAddresses {
                for port in service.udpPorts {
                    var endpoint = address
                    endpoint.port = port
                    planned.append(PlannedListener(key: ListenerKey(proto: .udp, endpoint: endpoint),
                                                   service: service.name, options: options, workers: workers))
                }
                for port in service.tcpPorts {
                    var endpoint = address
                    endpoint.port = port
                    planned.append(PlannedListener(key: ListenerKey(proto: .tcp, endpoint: endpoint),
                                                   service: service.name, options: options, workers: 1))
                }
            }
        }
        return planned
    }
}

extension ServiceDefinition {
    /// The local addresses (port 0) the service binds under its bind policy and families.
    var listenAddresses: [IPEndpoint] {
        switch bind {
        case .wildcard:
            return family.families.map { IPEndpoint.wildcard($0 == .ipv4 ? .ipv4 : .ipv6, port: 0) }
        case .addresses(let addresses):
            return addresses.compactMap { IPEndpoint(address: $0.text, port: 0) }
        case .perAddress:
            // Refused by the configuration loader until address watching exists.
            return []
        }
    }
}
