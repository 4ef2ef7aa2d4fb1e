/// Conversions of a `Duration` to the integer counts system calls and event loops take, clamped instead of
/// trapping: configuration bounds keep durations far from these limits, but a conversion must never be what stops
/// the daemon (a trap kills every service at once).
extension Duration {
    /// Whole nanoseconds, clamped to `Int64` (about 292 years either way).
    public var saturatingNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        let (total, overflowAdding) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        guard !overflowAdding else { return seconds < 0 ? .min : .max }
        return total
    }

    /// Whole milliseconds, clamped to `Int64`.
    public var saturatingMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        let (total, overflowAdding) = whole.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        guard !overflowAdding else { return seconds < 0 ? .min : .max }
        return total
    }
}
