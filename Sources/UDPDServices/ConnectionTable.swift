import NIOCore
import Synchronization
import UDPDTransport

/// The open TCP connections of one service across all its listeners, for `max-connections` (the oldest is
/// closed to make room, as MIT krb5 does) and `max-connections-per-source` (a new one over the limit is refused).
///
/// The supervisor keeps one table per service name across reloads, so a reload neither forgets open connections
/// nor lets the limit be exceeded. Memory is bounded by the limits: at most `max-connections` entries.
///
/// `Sendable`: the state is behind a mutex.
public final class ConnectionTable: Sendable {
    struct Entry {
        var channel: any Channel
        var source: IPAddressBits
        var counters: ListenerCounters
    }

    struct State {
        var entries = OldestFirstRegistry<ObjectIdentifier, Entry>()
        var perSource: [IPAddressBits: Int] = [:]
    }

    /// What became of a new connection.
    public enum Admission: Sendable {
        /// It may go on; the connections listed were evicted to make room and must be closed by the caller.
        case admitted(evicted: [any Channel])
        /// Its source has `max-connections-per-source` connections already.
        case refusedPerSource
    }

    private let state = Mutex(State())

    /// Creates an empty table.
    public init() {}

    /// Connections in the table.
    public var count: Int { state.withLock { $0.entries.count } }

    /// Admits `channel` from `source` under `policy`'s limits; evicted connections are counted on their own
    /// listener's counters as `connection_limit`.
    ///
    /// Connections are ordered by the calls to this method, so the listener calls it as it accepts them, on the
    /// accepting event loop: "oldest" is then the order of accept, whichever event loop later serves a connection.
    public func admit(
        _ channel: any Channel,
        source: IPAddressBits,
        counters: ListenerCounters,
        policy: ConnectionPolicy
    ) -> Admission {
        let key = ObjectIdentifier(channel)
        let evicted: [Entry]? = state.withLock { state in
            if let perSource = policy.maxConnectionsPerSource, state.perSource[source, default: 0] >= perSource {
                return nil
            }
            var evicted: [Entry] = []
            while state.entries.count >= policy.maxConnections, let oldest = state.entries.removeOldest() {
                Self.forget(oldest.value, in: &state)
                evicted.append(oldest.value)
            }
            state.entries.insert(Entry(channel: channel, source: source, counters: counters), for: key)
            state.perSource[source, default: 0] += 1
            return evicted
        }
        guard let evicted else { return .refusedPerSource }
        for entry in evicted { entry.counters.addDrop(.connectionLimit) }
        channel.closeFuture.whenComplete { _ in
            self.state.withLock { state in
                guard let entry = state.entries.remove(key) else { return }
                Self.forget(entry, in: &state)
            }
        }
        return .admitted(evicted: evicted.map(\.channel))
    }

    /// Takes a connection no longer in the table off its source's count.
    private static func forget(_ entry: Entry, in state: inout State) {
        let left = state.perSource[entry.source, default: 1] - 1
        state.perSource[entry.source] = left > 0 ? left : nil
    }
}
