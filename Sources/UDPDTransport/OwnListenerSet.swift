import Synchronization

/// The UDP (address, port) pairs udpd listens on, with the host's own addresses: what a datagram's source must not
/// be for udpd to answer it.
///
/// A datagram whose source is one of udpd's own listeners was sent by udpd itself, or forged to look so; answering it
/// starts a loop between two of udpd's services (echo to echo, echo to exec) that runs until udpd stops. The worker
/// threads test every received datagram's source against the set before its handler sees it, and a forward tests
/// its upstream before opening a session towards it.
///
/// A listener bound to one address matches that address; a wildcard listener matches any of the host's own
/// addresses (and the loopback addresses, `127.0.0.0/8` and `::1`, which are always local) of its family.
///
/// The test costs one load from a 65 536-bit table of the listening ports for almost every datagram; only a source
/// port that udpd listens on goes on to compare addresses. Neither allocates. `Sendable`: immutable.
public final class OwnListenerSet: Sendable {
    /// One listening socket's address and port.
    private struct Entry: Sendable {
        var port: UInt16
        var address: IPAddressBits
        var isWildcard: Bool
    }

    /// One bit per port: set when some UDP listener has that port.
    private let portBits: [UInt64]
    /// Every listener, sorted by port: a port hit finds its listeners by binary search, so that a client that
    /// happens to use a listening port as its source (NTP peers send from 123 to 123) costs a few comparisons
    /// however many services udpd runs.
    private let entries: [Entry]
    /// The host's own addresses, which a wildcard listener's replies may leave from.
    private let localAddresses: Set<IPAddressBits>

    /// The set of nothing: before the first listener starts, every source is answered.
    public static let empty = OwnListenerSet(listening: [], hostAddresses: [])

    /// The set of UDP listeners bound to `listening` (wildcard addresses included) on a host whose own addresses are
    /// `hostAddresses` (their ports are ignored).
    public init(listening: [IPEndpoint], hostAddresses: [IPEndpoint]) {
        var bits = [UInt64](repeating: 0, count: 1024)
        for endpoint in listening { bits[Int(endpoint.port) >> 6] |= 1 << UInt64(endpoint.port & 63) }
        portBits = bits
        entries = listening.map { Entry(port: $0.port, address: $0.addressBits, isWildcard: $0.isWildcard) }
            .sorted { $0.port < $1.port }
        localAddresses = Set(hostAddresses.map(\.addressBits))
    }

    /// Whether `endpoint` is one of udpd's own UDP listeners.
    @inline(__always)
    public func contains(_ endpoint: IPEndpoint) -> Bool {
        let port = endpoint.port
        guard portBits[Int(port &>> 6)] & (1 &<< UInt64(port & 63)) != 0 else { return false }
        return listens(on: endpoint.addressBits, port: port)
    }

    /// Whether some listener on `port` matches `address`: the same address, or a wildcard of its family when the
    /// address is one of the host's own.
    private func listens(on address: IPAddressBits, port: UInt16) -> Bool {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].port < port { low = middle + 1 } else { high = middle }
        }
        var index = low
        while index < entries.count, entries[index].port == port {
            let entry = entries[index]
            if entry.isWildcard {
                if entry.address.isIPv4 == address.isIPv4 && isLocal(address) { return true }
            } else if entry.address == address {
                return true
            }
            index += 1
        }
        return false
    }

    /// Whether `address` is the host's own: a loopback address or one configured on an interface.
    private func isLocal(_ address: IPAddressBits) -> Bool {
        let loopback = address.isIPv4 ? address.low >> 24 & 0xff == 127 : address.high == 0 && address.low == 1
        return loopback || localAddresses.contains(address)
    }
}

/// Where the supervisor publishes the ``OwnListenerSet`` of the listeners serving now, at start, after every reload
/// and after every address change; the worker threads take it once per batch.
///
/// `Sendable`: the set is behind a mutex, taken once per batch (as the handler slot is), never per datagram.
public final class OwnListenerRegistry: Sendable {
    private let published = Mutex<OwnListenerSet>(.empty)

    /// Creates a registry holding the empty set.
    public init() {}

    /// The set published last.
    public var current: OwnListenerSet { published.withLock { $0 } }

    /// Replaces the set; batches that already started finish with the old one.
    public func publish(_ set: OwnListenerSet) {
        published.withLock { $0 = set }
    }
}
