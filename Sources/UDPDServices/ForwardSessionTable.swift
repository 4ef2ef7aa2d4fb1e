import Synchronization

/// A forward's UDP sessions, bounded: when full, the oldest session is given up for the new one.
///
/// Age is creation order, kept in a queue beside the dictionary; entries of sessions that already ended are skipped
/// when they reach the front. `Sendable`: everything is behind a mutex.
final class ForwardSessionTable: Sendable {
    private struct State {
        var sessions: [ForwardSessionKey: ForwardSession] = [:]
        var order: [ForwardSession] = []
        var head = 0
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { state.withLock { $0.sessions.count } }

    /// The session for `key`, made by `make` when there is none; with the session evicted to make room, if any.
    func session(
        for key: ForwardSessionKey,
        make: () -> ForwardSession
    ) -> (session: (value: ForwardSession, isNew: Bool), evicted: ForwardSession?) {
        state.withLock { state in
            if let existing = state.sessions[key] { return ((existing, false), nil) }
            var evicted: ForwardSession?
            if state.sessions.count >= capacity {
                while state.head < state.order.count {
                    let oldest = state.order[state.head]
                    state.head += 1
                    if state.sessions[oldest.key] === oldest {
                        state.sessions[oldest.key] = nil
                        evicted = oldest
                        break
                    }
                }
            }
            let session = make()
            state.sessions[key] = session
            state.order.append(session)
            if state.order.count - state.head > 2 * max(capacity, state.sessions.count) || state.head > 4096 {
                // Sessions that ended on their own still sit in the queue: keep only the live ones, in order.
                let live = state.sessions
                state.order = state.order[state.head...].filter { live[$0.key] === $0 }
                state.head = 0
            }
            return ((session, true), evicted)
        }
    }

    /// Forgets `session` if it is still the one for its key.
    func remove(_ session: ForwardSession) {
        state.withLock { state in
            if state.sessions[session.key] === session { state.sessions[session.key] = nil }
        }
    }
}
