import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Sockets that may be bound to an address this host does not have (IP_TRANSPARENT, IPV6_TRANSPARENT), so that a
/// `transparent: true` forward sends upstream from the client's own address and port.
///
/// Setting the option takes CAP_NET_RAW (or CAP_NET_ADMIN); binding and sending afterwards take nothing. After
/// udpd dropped its privileges only the binder thread keeps CAP_NET_RAW (and only when the configuration it
/// started with has a transparent service): the threads that read what clients send hold no capability at all.
/// So the binder thread makes these sockets ahead of need, a small stock of each kind (family and type) topped
/// up in the background whenever it falls to half, and a worker thread or event loop takes one without waiting.
/// Without a binder (udpd was not asked to drop privileges) sockets are made on the spot.
///
/// A stock that is empty (more new sessions at once than it holds, before the binder thread topped it up) costs
/// the request that needed a socket, which its caller counts. When the option cannot be set (the capability is
/// missing), every take fails with the reason, and the binder thread tries again at most once a second.
///
/// `Sendable`: the stocks and the maker are behind mutexes; the rest is immutable.
public final class TransparentSockets: Sendable {
    /// Sockets made ahead of need, per kind, once a binder makes them.
    public static let stockSize = 32

    private struct Kind: Hashable {
        var family: IPFamily
        var type: CInt
    }

    private struct Stock {
        var sockets: [SocketDescriptor] = []
        var refilling = false
        /// Why the last socket could not be made, and when (a retry waits a second).
        var failure: SystemCallError?
        var failedAt = ContinuousClock.now
    }

    private let maker = Mutex<PrivilegedBinder?>(nil)
    private let stocks = Mutex<[Kind: Stock]>([:])
    private let connector = Mutex<StreamConnectWatcher?>(nil)

    /// Creates a source that makes sockets on the calling thread until ``makeOn(_:)``.
    public init() {}

    /// Makes sockets from now on on `binder`'s thread, the one that kept the capability.
    public func makeOn(_ binder: PrivilegedBinder) {
        maker.withLock { $0 = binder }
    }

    /// Whether a socket of `family` can be made transparent now: `nil` when it can, else the reason (usually EPERM:
    /// udpd lacks CAP_NET_RAW). Runs on the thread that makes them, so it says what the services will meet; with a
    /// binder it also fills the stocks of that family, so that the first sessions find sockets ready.
    public func check(family: IPFamily) async -> SystemCallError? {
        let datagram = Kind(family: family, type: CInt(SOCK_DGRAM.rawValue))
        let stream = Kind(family: family, type: CInt(SOCK_STREAM.rawValue))
        guard let binder = maker.withLock({ $0 }) else {
            do {
                _ = try Self.make(datagram)
                return nil
            } catch {
                return error
            }
        }
        return await binder.run { [self] in
            for kind in [datagram, stream] {
                let wanted = stocks.withLock { stocks in
                    guard stocks[kind]?.refilling != true else { return false }
                    stocks[kind, default: Stock()].refilling = true
                    return true
                }
                if wanted { refill(kind) }
            }
            return stocks.withLock { $0[datagram]?.failure ?? $0[stream]?.failure }
        }
    }

    /// A non-blocking transparent socket of `family` and `type` (`SOCK_DGRAM`, `SOCK_STREAM`), not yet bound.
    /// Never waits: from the stock when a binder makes them, else made here.
    public func take(family: IPFamily, type: CInt) throws(SystemCallError) -> SocketDescriptor {
        let kind = Kind(family: family, type: type)
        guard let binder = maker.withLock({ $0 }) else { return try Self.make(kind) }
        let now = ContinuousClock.now
        let (socket, failure, refill) = stocks.withLock { stocks in
            var stock = stocks[kind] ?? Stock()
            defer { stocks[kind] = stock }
            let socket = stock.sockets.popLast()
            var refill = false
            if stock.sockets.count <= Self.stockSize / 2, !stock.refilling,
                stock.failure == nil || now - stock.failedAt >= .seconds(1)
            {
                stock.refilling = true
                refill = true
            }
            return (socket, stock.failure, refill)
        }
        if refill { binder.submit { [self] in self.refill(kind) } }
        if let socket { return socket }
        throw failure
            ?? SystemCallError(
                call: "socket",
                errno: EAGAIN,
                context: "no \(family) transparent socket ready; the binder thread is making more"
            )
    }

    /// Connects a transparent TCP socket bound to `client` to `upstream` without blocking anyone, and calls
    /// `completion` (on the connect watcher's thread) with the connected socket, or the failure: refused, or
    /// ETIMEDOUT once `timeout` passed.
    public func connectStream(
        from client: IPEndpoint,
        to upstream: IPEndpoint,
        timeout: Duration,
        completion: @escaping @Sendable (Result<SocketDescriptor, SystemCallError>) -> Void
    ) {
        let socket: SocketDescriptor
        do {
            socket = try bound(to: client, towards: upstream, type: CInt(SOCK_STREAM.rawValue))
            try socket.startConnect(to: upstream, context: "tcp upstream \(upstream) from \(client)")
        } catch {
            return completion(.failure(error))
        }
        let watcher: StreamConnectWatcher
        do {
            watcher = try connector.withLock { (current) throws(SystemCallError) in
                if let current { return current }
                let made = try StreamConnectWatcher()
                current = made
                return made
            }
        } catch {
            return completion(.failure(error))
        }
        watcher.watch(socket, timeout: timeout, completion: completion)
    }

    /// A transparent socket of `type` bound to `client` (its address and port), for traffic to `upstream`.
    /// Throws EAFNOSUPPORT when the two are of different families (an IPv6 client cannot appear as itself to an
    /// IPv4 upstream).
    public func bound(to client: IPEndpoint, towards upstream: IPEndpoint, type: CInt) throws(SystemCallError)
        -> SocketDescriptor
    {
        let source = client.unmappingIPv4
        let context = "transparent \(type == CInt(SOCK_STREAM.rawValue) ? "tcp" : "udp") from \(source) to \(upstream)"
        guard source.family == upstream.family else {
            throw SystemCallError(call: "bind", errno: EAFNOSUPPORT, context: context + ": the families differ")
        }
        let socket = try take(family: upstream.family, type: type)
        try DescriptorTable.checkHeadroom(socket.rawValue, call: "socket", context: context)
        try socket.bind(to: source, context: context)
        return socket
    }

    /// Makes stock of `kind` up to ``stockSize`` on the binder thread; stops at the first failure, which takes
    /// will report until a second has passed.
    private func refill(_ kind: Kind) {
        var made: [SocketDescriptor] = []
        var failure: SystemCallError?
        let missing = Self.stockSize - stocks.withLock { $0[kind]?.sockets.count ?? 0 }
        for _ in 0..<max(missing, 0) {
            do {
                made.append(try Self.make(kind))
            } catch {
                failure = error
                break
            }
        }
        let now = ContinuousClock.now
        stocks.withLock { stocks in
            var stock = stocks[kind] ?? Stock()
            stock.sockets += made
            stock.refilling = false
            stock.failure = failure
            if failure != nil { stock.failedAt = now }
            stocks[kind] = stock
        }
    }

    /// One non-blocking socket of `kind` with the transparent option set.
    private static func make(_ kind: Kind) throws(SystemCallError) -> SocketDescriptor {
        let context = "\(kind.family) transparent socket"
        let socket = try SocketDescriptor.open(family: kind.family, type: kind.type, context: context)
        try setNonBlocking(socket.rawValue, true, context: context)
        switch kind.family {
        case .ipv4:
            try socket.setOption(level: CInt(IPPROTO_IP), name: cudpd_ip_transparent, value: 1, "IP_TRANSPARENT")
        case .ipv6:
            try socket.setOption(
                level: CInt(IPPROTO_IPV6),
                name: cudpd_ipv6_transparent,
                value: 1,
                "IPV6_TRANSPARENT"
            )
        }
        return socket
    }
}
