import Logging
import Synchronization

/// Logs a recurring failure at most once per interval, saying how many were left out meanwhile: an upstream that is
/// down must not flood the log at the rate clients retry.
///
/// `Sendable`: its state is behind a mutex.
final class RateLimitedLog: Sendable {
    private struct State {
        var last: ContinuousClock.Instant?
        var suppressed = 0
    }

    private let logger: Logger
    private let interval: Duration
    private let state = Mutex(State())

    init(logger: Logger, interval: Duration = .seconds(1)) {
        self.logger = logger
        self.interval = interval
    }

    /// Logs `message` at warning level unless a line was logged less than an interval ago. Neither the message nor
    /// the metadata is built for a line left out, so a failing datapath does not allocate for them.
    func warning(_ message: @autoclosure () -> String, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        let now = ContinuousClock.now
        let suppressed: Int? = state.withLock { state in
            if let last = state.last, now - last < interval {
                state.suppressed += 1
                return nil
            }
            defer { state.suppressed = 0 }
            state.last = now
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata = metadata()
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning("\(message())", metadata: metadata)
    }
}
