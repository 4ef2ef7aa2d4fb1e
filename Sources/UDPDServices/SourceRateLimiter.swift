import Synchronization
import UDPDConfig
import UDPDTransport

/// Per-source token buckets (`rate-limit: {per-source: N/s, burst: N}`) in a table of fixed size, so that a flood
/// of spoofed sources costs a bounded amount of memory and no allocation per datagram.
///
/// The table has ``shardCount`` shards, each behind its own mutex (the workers serving one port take different
/// locks most of the time), each a set-associative cache of ``waysPerSet``-entry sets. A source hashes (with a
/// per-process random seed, so that an attacker cannot aim at one set) to one set; a source not in its set takes
/// the way that was used least recently. A flood of spoofed sources can therefore evict a real source's bucket,
/// which then starts full again: the limit fails open for it rather than punishing it, and the spoofed sources,
/// each sending little, are as limited as the bucket size allows.
///
/// `Sendable`: every shard is behind a mutex; the rest is immutable.
public final class SourceRateLimiter: Sendable {
    /// Shards, each with its own lock.
    public static let shardCount = 64
    /// Sets per shard.
    public static let setsPerShard = 64
    /// Entries per set.
    public static let waysPerSet = 4
    /// Sources tracked at once: 16 384.
    public static var capacity: Int { shardCount * setsPerShard * waysPerSet }

    struct Bucket {
        var address = IPAddressBits(high: 0, low: 0)
        /// Nanoseconds on the limiter's clock when last used; 0 for an unused entry.
        var lastUsed: UInt64 = 0
        /// Tokens, in millionths of a datagram, so that refill needs no floating point.
        var tokens: UInt64 = 0
    }

    /// One lock and its sets.
    ///
    /// `Sendable`: the buckets are behind the mutex.
    final class Shard: Sendable {
        let buckets: Mutex<[Bucket]>

        init(entries: Int) {
            buckets = Mutex([Bucket](repeating: Bucket(), count: entries))
        }
    }

    private let shards: [Shard]
    private let seed: UInt64
    private let ratePerSecond: UInt64
    /// The burst in millionths of a datagram: a full bucket.
    private let capacity: UInt64
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    /// Creates a limiter allowing each source `limit.perSecond` datagrams a second after a burst of `limit.burst`.
    public init(_ limit: RateLimit) {
        let entries = Self.setsPerShard * Self.waysPerSet
        shards = (0..<Self.shardCount).map { _ in Shard(entries: entries) }
        seed = UInt64.random(in: 1...UInt64.max) | 1
        ratePerSecond = UInt64(max(1, limit.perSecond))
        // Saturating, never trapping: `burst` is bounded at validation (10^12 millionths at most), but a full bucket
        // of UInt64.max millionths would still only mean "no limit".
        let (capacity, overflow) = UInt64(max(1, limit.burst)).multipliedReportingOverflow(by: Self.unit)
        self.capacity = overflow ? .max : capacity
        origin = clock.now
    }

    /// Takes a token for `address`; false when the source is over its limit.
    public func admit(_ address: IPAddressBits) -> Bool {
        admit(address, at: nanosecondsSinceOrigin())
    }

    /// Takes a token for `address` at `now` (nanoseconds on the limiter's clock, never 0).
    func admit(_ address: IPAddressBits, at now: UInt64) -> Bool {
        let hash = mix(address)
        let shard = Int(hash % UInt64(Self.shardCount))
        let set = Int((hash / UInt64(Self.shardCount)) % UInt64(Self.setsPerShard))
        let unit = Self.unit
        let capacity = capacity
        let ratePerSecond = ratePerSecond
        return shards[shard].buckets.withLock { buckets in
            let first = set * Self.waysPerSet
            var victim = first
            for way in first..<(first + Self.waysPerSet) {
                if buckets[way].lastUsed != 0 && buckets[way].address == address {
                    let elapsed = now &- buckets[way].lastUsed
                    // Tokens earned, in millionths: elapsed ns * rate / 1e9 * 1e6 = elapsed µs * rate.
                    let (product, overflow) = (elapsed / 1000).multipliedReportingOverflow(by: ratePerSecond)
                    let earned = overflow ? capacity : product
                    let (sum, full) = buckets[way].tokens.addingReportingOverflow(earned)
                    buckets[way].tokens = full ? capacity : min(capacity, sum)
                    buckets[way].lastUsed = now
                    guard buckets[way].tokens >= unit else { return false }
                    buckets[way].tokens -= unit
                    return true
                }
                if buckets[way].lastUsed < buckets[victim].lastUsed { victim = way }
            }
            buckets[victim] = Bucket(address: address, lastUsed: now, tokens: capacity - unit)
            return true
        }
    }

    /// A datagram's worth of tokens: tokens are counted in millionths, so that refill needs no floating point.
    private static let unit: UInt64 = 1_000_000

    private func nanosecondsSinceOrigin() -> UInt64 {
        let (seconds, attoseconds) = (clock.now - origin).components
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000) &+ 1
    }

    /// A fast keyed mix of the address (splitmix64's finaliser over both halves).
    private func mix(_ address: IPAddressBits) -> UInt64 {
        var value = address.high ^ (address.low &* 0x9e37_79b9_7f4a_7c15) ^ seed
        value = (value ^ (value >> 30)) &* 0xbf58_476d_1ce4_e5b9
        value = (value ^ (value >> 27)) &* 0x94d0_49bb_1331_11eb
        return value ^ (value >> 31)
    }
}
