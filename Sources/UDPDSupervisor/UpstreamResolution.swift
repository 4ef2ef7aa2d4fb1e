import NIOCore
import NIOPosix
import UDPDConfig
import UDPDServices

/// A forward service's upstream as resolved for one configuration: its address, or why it has none.
///
/// `Sendable`: a value of `Sendable` parts.
struct ResolvedUpstream: Sendable {
    /// The address, or the error that names the service and the upstream that could not be resolved.
    var address: Result<SocketAddress, ServiceHandlerError>

    /// Whether `other` names the same address; a service whose upstream resolves elsewhere than the running one
    /// counts as changed at reload.
    func sameAddress(as other: ResolvedUpstream?) -> Bool {
        guard let other else { return false }
        switch (address, other.address) {
        case (.success(let mine), .success(let theirs)): return mine == theirs
        case (.failure(let mine), .failure(let theirs)): return mine.message == theirs.message
        default: return false
        }
    }
}

/// Resolves the upstream host names of forward services before a configuration is applied, off the supervisor.
///
/// `getaddrinfo` blocks for as long as the resolver takes (seconds, with a slow or unreachable DNS server), so it
/// runs on SwiftNIO's blocking pool, never on the supervisor actor or the cooperative pool: status and metrics keep
/// answering while a start or a reload waits for a name. Every distinct name is looked up at once, so several slow
/// names take as long as the slowest. Address literals need no lookup.
enum UpstreamResolution {
    /// Each forward service's upstream, by service name. A service without an upstream is left out (building its
    /// handlers reports that).
    static func resolve(_ services: [ServiceDefinition]) async -> [String: ResolvedUpstream] {
        var resolved: [String: ResolvedUpstream] = [:]
        var waiting: [HostPort: [String]] = [:]
        for service in services where service.handler == .forward {
            guard let upstream = service.upstream else { continue }
            if let literal = try? SocketAddress(ipAddress: upstream.host, port: Int(upstream.port)) {
                resolved[service.name] = ResolvedUpstream(address: .success(literal))
            } else {
                waiting[upstream, default: []].append(service.name)
            }
        }
        guard !waiting.isEmpty else { return resolved }
        await withTaskGroup(of: (HostPort, Result<SocketAddress, any Error>).self) { group in
            for upstream in waiting.keys {
                group.addTask { (upstream, await lookUp(upstream)) }
            }
            for await (upstream, outcome) in group {
                for service in waiting[upstream] ?? [] {
                    resolved[service] = ResolvedUpstream(
                        address: outcome.mapError { error in
                            ServiceHandlerError(
                                service: service,
                                message: "cannot resolve upstream '\(upstream)': \(error)"
                            )
                        }
                    )
                }
            }
        }
        return resolved
    }

    /// Resolves one name on the blocking pool.
    private static func lookUp(_ upstream: HostPort) async -> Result<SocketAddress, any Error> {
        let host = upstream.host
        let port = Int(upstream.port)
        do {
            return .success(
                try await NIOThreadPool.singleton.runIfActive {
                    try SocketAddress.makeAddressResolvingHost(host, port: port)
                }
            )
        } catch {
            return .failure(error)
        }
    }
}
