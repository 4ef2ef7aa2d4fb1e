import Synchronization
import UDPDTransport

/// A forward's UDP sessions, bounded: when full, the oldest session is given up for the new one.
///
/// Looking a session up allocates nothing: a dictionary keyed by the two endpoints, behind a mutex. Age is creation
/// order, kept in a queue beside the dictionary; entries of sessions that already ended are skipped when they reach
/// the front, and the queue is compacted when they pile up. `Sendable`: everything is behind a mutex.
final class ForwardSessionTable: Sendable {
    private struct State {
        var sessions: [ForwardSessionKey: ForwardSession] = [:]
        /// Keys in creation order, with the serial of the session they were made for: no session reference, so that
        /// a session that ended is not kept (with its socket) by the queue.
        var order: [(key: ForwardSessionKey, serial: UInt64)] = []
        var head = 0
        var nextSerial: UInt64 = 0
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { state.withLock { $0.sessions.count } }

    /// The session for `key`, if there is one.
    @inline(__always)
    func session(for key: ForwardSessionKey) -> ForwardSession? {
        state.withLock { $0.sessions[key] }
    }

    /// The session for `key`, opened by `open` when there is none (under the table's lock, so that two workers
    /// never open two sessions for one key); with the session evicted to make room, if any, which the caller retires.
    func session(
        for key: ForwardSessionKey,
        open: () throws(SystemCallError) -> ForwardSession
    ) throws(SystemCallError) -> (session: ForwardSession, evicted: ForwardSession?) {
        try state.withLock { (state) throws(SystemCallError) in
            if let existing = state.sessions[key] { return (existing, nil) }
            let session = try open()
            state.nextSerial += 1
            session.serial = state.nextSerial
            var evicted: ForwardSession?
            if state.sessions.count >= capacity {
                while state.head < state.order.count {
                    let oldest = state.order[state.head]
                    state.head += 1
                    if let candidate = state.sessions[oldest.key], candidate.serial == oldest.serial {
                        state.sessions[oldest.key] = nil
                        evicted = candidate
                        break
                    }
                }
            }
            state.sessions[key] = session
            state.order.append((key, session.serial))
            Self.compactIfNeeded(&state, capacity: capacity)
            return (session, evicted)
        }
    }

    /// Takes in `session`, carried over from a reloaded service's old handler, as the newest; `false` (the caller
    /// keeps it elsewhere) when its key has a session already or the table is full.
    func adopt(_ session: ForwardSession) -> Bool {
        state.withLock { state in
            guard state.sessions[session.key] == nil, state.sessions.count < capacity else { return false }
            state.nextSerial += 1
            session.serial = state.nextSerial
            state.sessions[session.key] = session
            state.order.append((session.key, session.serial))
            Self.compactIfNeeded(&state, capacity: capacity)
            return true
        }
    }

    /// Removes `session`, unless another session took its key meanwhile; whether it was removed (the caller retires
    /// it then).
    func remove(_ session: ForwardSession) -> Bool {
        state.withLock { state in
            guard let current = state.sessions[session.key], current === session else { return false }
            state.sessions[session.key] = nil
            return true
        }
    }

    /// Removes and returns every session whose last traffic was at or before `deadline` (uptime nanoseconds).
    func removeIdle(lastActiveBefore deadline: UInt64) -> [ForwardSession] {
        state.withLock { state in
            var idle: [ForwardSession] = []
            for session in state.sessions.values where session.lastActivity.load(ordering: .relaxed) <= deadline {
                idle.append(session)
            }
            for session in idle { state.sessions[session.key] = nil }
            if !idle.isEmpty { Self.compactIfNeeded(&state, capacity: capacity) }
            return idle
        }
    }

    /// Removes and returns every session.
    func removeAll() -> [ForwardSession] {
        state.withLock { state in
            defer { state = State() }
            return Array(state.sessions.values)
        }
    }

    /// Sessions that ended still sit in the age queue: keep only the live ones, in order, once they are many.
    private static func compactIfNeeded(_ state: inout State, capacity: Int) {
        let queued = state.order.count - state.head
        // `queued - x > x` rather than `queued > 2 * x`: `max-sessions` comes from the configuration, and doubling
        // it must not trap (both sides are non-negative, so the subtraction cannot overflow).
        let limit = max(capacity, state.sessions.count)
        guard
            queued - limit > limit || state.head > 4096
                || queued - state.sessions.count > state.sessions.count + 1024
        else { return }
        let live = state.sessions
        state.order = state.order[state.head...].filter { live[$0.key]?.serial == $0.serial }
        state.head = 0
    }
}
