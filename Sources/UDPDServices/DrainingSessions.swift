import Synchronization

/// Forward sessions of an earlier handler of a service whose upstream the reloaded service no longer has: no
/// request goes out on them any more, but replies still on their way back are relayed to their clients until each
/// goes idle. Swept with the new handler's own sessions.
///
/// `Sendable`: the sessions are behind a mutex.
final class DrainingSessions: Sendable {
    private let sessions = Mutex<[ForwardSession]>([])

    /// Sessions draining now.
    var count: Int { sessions.withLock { $0.count } }

    /// Adds `drained` to the sessions draining.
    func add(_ drained: [ForwardSession]) {
        guard !drained.isEmpty else { return }
        sessions.withLock { $0 += drained }
    }

    /// Removes and returns every session draining.
    func removeAll() -> [ForwardSession] {
        sessions.withLock { current in
            defer { current = [] }
            return current
        }
    }

    /// Removes and returns the sessions whose last traffic was at or before `deadline` (uptime nanoseconds).
    func removeIdle(lastActiveBefore deadline: UInt64) -> [ForwardSession] {
        sessions.withLock { current in
            var idle: [ForwardSession] = []
            var kept: [ForwardSession] = []
            for session in current {
                if session.lastActivity.load(ordering: .relaxed) <= deadline {
                    idle.append(session)
                } else {
                    kept.append(session)
                }
            }
            if !idle.isEmpty { current = kept }
            return idle
        }
    }
}
