/// Round-trip times in whole microseconds, one bucket per microsecond up to ``limit``: exact percentiles at the
/// resolution that matters here, with no allocation while recording.
struct LatencyHistogram {
    /// The largest latency with its own bucket; longer ones share the last bucket.
    static let limit = 200_000

    private(set) var counts: [UInt64]
    private(set) var total: UInt64 = 0
    private(set) var maximum: UInt64 = 0

    init() {
        counts = [UInt64](repeating: 0, count: Self.limit + 1)
    }

    /// Records one round trip of `nanoseconds`.
    mutating func record(nanoseconds: UInt64) {
        let micros = nanoseconds / 1000
        counts[Int(min(micros, UInt64(Self.limit)))] &+= 1
        total &+= 1
        if micros > maximum { maximum = micros }
    }

    /// Adds another thread's histogram.
    mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] &+= other.counts[index] }
        total &+= other.total
        maximum = max(maximum, other.maximum)
    }

    /// Forgets everything recorded (after the warm-up).
    mutating func reset() {
        for index in counts.indices { counts[index] = 0 }
        total = 0
        maximum = 0
    }

    /// The latency in microseconds below which `fraction` of the round trips fell; 0 when nothing was recorded.
    func percentile(_ fraction: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = UInt64((Double(total) * fraction).rounded(.up))
        var seen: UInt64 = 0
        for (micros, count) in counts.enumerated() {
            seen &+= count
            if seen >= max(rank, 1) { return Double(micros) }
        }
        return Double(maximum)
    }
}
