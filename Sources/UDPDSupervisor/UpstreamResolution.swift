import NIOCore
import NIOPosix
import UDPDConfig
import UDPDServices

/// A forward service's upstreams as resolved for one configuration: their addresses in order, or why it has none.
///
/// `Sendable`: a value of `Sendable` parts.
struct ResolvedUpstream: Sendable {
    /// The addresses, in the order of `upstream:`, or the error that names the service and the first upstream that
    /// could not be resolved.
    var address: Result<[SocketAddress], ServiceHandlerError>

    /// Whether `other` names the same addresses in the same order; a service whose upstreams resolve elsewhere than
    /// the running ones counts as changed at reload.
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
/// names take as long as the slowest. Address literals need no lookup. Every upstream of a list must resolve, as a
/// single one must: a name that does not is an error of the start or the reload, which names it.
enum UpstreamResolution {
    /// Each forward service's upstreams, by service name. A service without upstreams is left out (building its
    /// handlers reports that).
    static func resolve(_ services: [ServiceDefinition]) async -> [String: ResolvedUpstream] {
        var names: Set<HostPort> = []
        for service in services where service.handler == .forward {
            for upstream in service.upstreams where literal(upstream) == nil { names.insert(upstream) }
        }
        var looked: [HostPort: Result<SocketAddress, any Error>] = [:]
        if !names.isEmpty {
            await withTaskGroup(of: (HostPort, Result<SocketAddress, any Error>).self) { group in
                for upstream in names {
                    group.addTask { (upstream, await lookUp(upstream)) }
                }
                for await (upstream, outcome) in group { looked[upstream] = outcome }
            }
        }
        var resolved: [String: ResolvedUpstream] = [:]
        for service in services where service.handler == .forward && !service.upstreams.isEmpty {
            var addresses: [SocketAddress] = []
            var failure: ServiceHandlerError?
            for upstream in service.upstreams {
                if let address = literal(upstream) {
                    addresses.append(address)
                    continue
                }
                switch looked[upstream] {
                case .success(let address)?:
                    addresses.append(address)
                case .failure(let error)?:
                    failure = ServiceHandlerError(
                        service: service.name,
                        message: "cannot resolve upstream '\(upstream)': \(error)"
                    )
                case nil:
                    failure = ServiceHandlerError(service: service.name, message: "upstream '\(upstream)' unresolved")
                }
                if failure != nil { break }
            }
            resolved[service.name] = ResolvedUpstream(address: failure.map { .failure($0) } ?? .success(addresses))
        }
        return resolved
    }

    /// The address of an upstream written as an address literal; `nil` for a name.
    private static func literal(_ upstream: HostPort) -> SocketAddress? {
        try? SocketAddress(ipAddress: upstream.host, port: Int(upstream.port))
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
