import Logging
import Synchronization

/// Logs recurring lines at most `lines` per interval, saying how many were left out meanwhile: an upstream that is
/// down must not flood the log at the rate clients retry, nor a flood of sessions at the rate they open.
///
/// `Sendable`: its state is behind a mutex.
final class RateLimitedLog: Sendable {
    private struct State {
        var windowStart: ContinuousClock.Instant?
        var logged = 0
        var suppressed = 0
    }

    /// The lines of session logs (`log-sessions`) allowed per second: enough for every session of a busy KDC, not
    /// enough for a flood of forged sources to fill a disk.
    static let sessionLinesPerSecond = 200

    private let logger: Logger
    private let interval: Duration
    private let lines: Int
    private let state = Mutex(State())

    /// Logs through `logger`, at most `lines` lines per `interval`.
    init(logger: Logger, interval: Duration = .seconds(1), lines: Int = 1) {
        self.logger = logger
        self.interval = interval
        self.lines = max(1, lines)
    }

    /// Logs `message` at warning level unless the interval's lines are spent. Neither the message nor the metadata is
    /// built for a line left out, so a failing datapath does not allocate for them.
    func warning(_ message: @autoclosure () -> String, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        log(.warning, message(), metadata: metadata())
    }

    /// Logs `message` at notice level unless the interval's lines are spent.
    func notice(_ message: @autoclosure () -> String, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        log(.notice, message(), metadata: metadata())
    }

    private func log(
        _ level: Logger.Level,
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> Logger.Metadata
    ) {
        let now = ContinuousClock.now
        let suppressed: Int? = state.withLock { state in
            if let start = state.windowStart, now - start < interval {
                guard state.logged < lines else {
                    state.suppressed += 1
                    return nil
                }
            } else {
                state.windowStart = now
                state.logged = 0
            }
            state.logged += 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata = metadata()
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.log(level: level, "\(message())", metadata: metadata)
    }
}
