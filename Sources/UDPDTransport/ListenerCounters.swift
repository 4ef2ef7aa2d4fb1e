import Synchronization

/// The running totals of one listener. Worker threads add to them once per batch; status reads them at any time.
///
/// `Sendable` because every field is an atomic.
public final class ListenerCounters: Sendable {
    /// Datagrams (UDP) received.
    public let receivedPackets = Atomic<UInt64>(0)
    /// Bytes (UDP payload) received.
    public let receivedBytes = Atomic<UInt64>(0)
    /// Datagrams sent.
    public let sentPackets = Atomic<UInt64>(0)
    /// Bytes sent.
    public let sentBytes = Atomic<UInt64>(0)
    /// TCP connections accepted.
    public let tcpAccepted = Atomic<UInt64>(0)
    /// TCP connections open now.
    public let tcpActive = Atomic<Int64>(0)
    /// TCP connections closed.
    public let tcpClosed = Atomic<UInt64>(0)
    private let truncated = Atomic<UInt64>(0)
    private let noDestination = Atomic<UInt64>(0)
    private let sendError = Atomic<UInt64>(0)
    private let sendBufferFull = Atomic<UInt64>(0)
    private let reflection = Atomic<UInt64>(0)
    private let ownSource = Atomic<UInt64>(0)
    private let ownUpstream = Atomic<UInt64>(0)
    private let oversize = Atomic<UInt64>(0)
    private let rateLimited = Atomic<UInt64>(0)
    private let rateLimitedTCPRedirect = Atomic<UInt64>(0)
    private let denied = Atomic<UInt64>(0)
    private let handlerFailed = Atomic<UInt64>(0)
    private let connectionLimit = Atomic<UInt64>(0)
    private let sourceLimit = Atomic<UInt64>(0)
    private let idleTimeout = Atomic<UInt64>(0)
    private let requestDeadline = Atomic<UInt64>(0)
    private let sessionEvicted = Atomic<UInt64>(0)
    private let upstreamError = Atomic<UInt64>(0)
    private let noUpstream = Atomic<UInt64>(0)
    private let noDescriptor = Atomic<UInt64>(0)
    private let instancesExceeded = Atomic<UInt64>(0)
    private let execTimeout = Atomic<UInt64>(0)
    private let execCrashed = Atomic<UInt64>(0)
    private let execKilled = Atomic<UInt64>(0)
    private let frameTooLong = Atomic<UInt64>(0)
    private let frameReservedBit = Atomic<UInt64>(0)
    private let clientReset = Atomic<UInt64>(0)
    private let upstreamReset = Atomic<UInt64>(0)

    /// Creates zeroed counters.
    public init() {}

    /// Counts `packets` datagrams of `bytes` bytes in all received.
    public func countReceived(packets: UInt64, bytes: UInt64) {
        receivedPackets.wrappingAdd(packets, ordering: .relaxed)
        receivedBytes.wrappingAdd(bytes, ordering: .relaxed)
    }

    /// Counts `packets` datagrams (or TCP writes) of `bytes` bytes in all sent.
    public func countSent(packets: UInt64, bytes: UInt64) {
        sentPackets.wrappingAdd(packets, ordering: .relaxed)
        sentBytes.wrappingAdd(bytes, ordering: .relaxed)
    }

    /// Counts a TCP connection accepted.
    public func countConnectionOpened() {
        tcpAccepted.wrappingAdd(1, ordering: .relaxed)
        tcpActive.wrappingAdd(1, ordering: .relaxed)
    }

    /// Counts a TCP connection closed.
    public func countConnectionClosed() {
        tcpActive.wrappingSubtract(1, ordering: .relaxed)
        tcpClosed.wrappingAdd(1, ordering: .relaxed)
    }

    /// The drop counters that are not zero; usually none, which costs no allocation.
    private func nonZeroDrops() -> [DropReason: UInt64] {
        var result: [DropReason: UInt64] = [:]
        for reason in DropReason.allCases {
            let count = drops(reason)
            if count > 0 { result[reason] = count }
        }
        return result
    }

    /// A consistent-enough copy of every counter, for status.
    public func snapshot() -> ListenerCountersSnapshot {
        ListenerCountersSnapshot(
            receivedPackets: receivedPackets.load(ordering: .relaxed),
            receivedBytes: receivedBytes.load(ordering: .relaxed),
            sentPackets: sentPackets.load(ordering: .relaxed),
            sentBytes: sentBytes.load(ordering: .relaxed),
            tcpAccepted: tcpAccepted.load(ordering: .relaxed),
            tcpActive: UInt64(max(0, tcpActive.load(ordering: .relaxed))),
            tcpClosed: tcpClosed.load(ordering: .relaxed),
            drops: nonZeroDrops()
        )
    }

    /// Counts `count` datagrams dropped for `reason`.
    public func addDrop(_ reason: DropReason, count: UInt64 = 1) {
        switch reason {
        case .truncated: truncated.wrappingAdd(count, ordering: .relaxed)
        case .noDestination: noDestination.wrappingAdd(count, ordering: .relaxed)
        case .sendError: sendError.wrappingAdd(count, ordering: .relaxed)
        case .sendBufferFull: sendBufferFull.wrappingAdd(count, ordering: .relaxed)
        case .reflection: reflection.wrappingAdd(count, ordering: .relaxed)
        case .ownSource: ownSource.wrappingAdd(count, ordering: .relaxed)
        case .ownUpstream: ownUpstream.wrappingAdd(count, ordering: .relaxed)
        case .oversize: oversize.wrappingAdd(count, ordering: .relaxed)
        case .rateLimited: rateLimited.wrappingAdd(count, ordering: .relaxed)
        case .rateLimitedTCPRedirect: rateLimitedTCPRedirect.wrappingAdd(count, ordering: .relaxed)
        case .denied: denied.wrappingAdd(count, ordering: .relaxed)
        case .handlerFailed: handlerFailed.wrappingAdd(count, ordering: .relaxed)
        case .connectionLimit: connectionLimit.wrappingAdd(count, ordering: .relaxed)
        case .sourceLimit: sourceLimit.wrappingAdd(count, ordering: .relaxed)
        case .idleTimeout: idleTimeout.wrappingAdd(count, ordering: .relaxed)
        case .requestDeadline: requestDeadline.wrappingAdd(count, ordering: .relaxed)
        case .sessionEvicted: sessionEvicted.wrappingAdd(count, ordering: .relaxed)
        case .upstreamError: upstreamError.wrappingAdd(count, ordering: .relaxed)
        case .noUpstream: noUpstream.wrappingAdd(count, ordering: .relaxed)
        case .noDescriptor: noDescriptor.wrappingAdd(count, ordering: .relaxed)
        case .instancesExceeded: instancesExceeded.wrappingAdd(count, ordering: .relaxed)
        case .execTimeout: execTimeout.wrappingAdd(count, ordering: .relaxed)
        case .execCrashed: execCrashed.wrappingAdd(count, ordering: .relaxed)
        case .execKilled: execKilled.wrappingAdd(count, ordering: .relaxed)
        case .frameTooLong: frameTooLong.wrappingAdd(count, ordering: .relaxed)
        case .frameReservedBit: frameReservedBit.wrappingAdd(count, ordering: .relaxed)
        case .clientReset: clientReset.wrappingAdd(count, ordering: .relaxed)
        case .upstreamReset: upstreamReset.wrappingAdd(count, ordering: .relaxed)
        }
    }

    /// Datagrams dropped for `reason` so far.
    public func drops(_ reason: DropReason) -> UInt64 {
        switch reason {
        case .truncated: truncated.load(ordering: .relaxed)
        case .noDestination: noDestination.load(ordering: .relaxed)
        case .sendError: sendError.load(ordering: .relaxed)
        case .sendBufferFull: sendBufferFull.load(ordering: .relaxed)
        case .reflection: reflection.load(ordering: .relaxed)
        case .ownSource: ownSource.load(ordering: .relaxed)
        case .ownUpstream: ownUpstream.load(ordering: .relaxed)
        case .oversize: oversize.load(ordering: .relaxed)
        case .rateLimited: rateLimited.load(ordering: .relaxed)
        case .rateLimitedTCPRedirect: rateLimitedTCPRedirect.load(ordering: .relaxed)
        case .denied: denied.load(ordering: .relaxed)
        case .handlerFailed: handlerFailed.load(ordering: .relaxed)
        case .connectionLimit: connectionLimit.load(ordering: .relaxed)
        case .sourceLimit: sourceLimit.load(ordering: .relaxed)
        case .idleTimeout: idleTimeout.load(ordering: .relaxed)
        case .requestDeadline: requestDeadline.load(ordering: .relaxed)
        case .sessionEvicted: sessionEvicted.load(ordering: .relaxed)
        case .upstreamError: upstreamError.load(ordering: .relaxed)
        case .noUpstream: noUpstream.load(ordering: .relaxed)
        case .noDescriptor: noDescriptor.load(ordering: .relaxed)
        case .instancesExceeded: instancesExceeded.load(ordering: .relaxed)
        case .execTimeout: execTimeout.load(ordering: .relaxed)
        case .execCrashed: execCrashed.load(ordering: .relaxed)
        case .execKilled: execKilled.load(ordering: .relaxed)
        case .frameTooLong: frameTooLong.load(ordering: .relaxed)
        case .frameReservedBit: frameReservedBit.load(ordering: .relaxed)
        case .clientReset: clientReset.load(ordering: .relaxed)
        case .upstreamReset: upstreamReset.load(ordering: .relaxed)
        }
    }

    /// Datagrams dropped for any reason so far.
    public var totalDrops: UInt64 {
        DropReason.allCases.reduce(0) { $0 + drops($1) }
    }
}

/// A copy of a listener's counters at one moment; snapshots add up to a service's totals.
public struct ListenerCountersSnapshot: Sendable, Equatable {
    /// Datagrams received.
    public var receivedPackets: UInt64 = 0
    /// Bytes received.
    public var receivedBytes: UInt64 = 0
    /// Datagrams sent.
    public var sentPackets: UInt64 = 0
    /// Bytes sent.
    public var sentBytes: UInt64 = 0
    /// TCP connections accepted.
    public var tcpAccepted: UInt64 = 0
    /// TCP connections open.
    public var tcpActive: UInt64 = 0
    /// TCP connections closed.
    public var tcpClosed: UInt64 = 0
    /// Drops by reason.
    public var drops: [DropReason: UInt64] = [:]

    /// Creates an all-zero snapshot.
    public init() {}

    /// Creates a snapshot from values.
    public init(
        receivedPackets: UInt64,
        receivedBytes: UInt64,
        sentPackets: UInt64,
        sentBytes: UInt64,
        tcpAccepted: UInt64,
        tcpActive: UInt64,
        tcpClosed: UInt64,
        drops: [DropReason: UInt64]
    ) {
        self.receivedPackets = receivedPackets
        self.receivedBytes = receivedBytes
        self.sentPackets = sentPackets
        self.sentBytes = sentBytes
        self.tcpAccepted = tcpAccepted
        self.tcpActive = tcpActive
        self.tcpClosed = tcpClosed
        self.drops = drops
    }

    /// All drops.
    public var totalDrops: UInt64 { drops.values.reduce(0, +) }

    /// The sum of two snapshots.
    public static func + (lhs: Self, rhs: Self) -> Self {
        Self(
            receivedPackets: lhs.receivedPackets + rhs.receivedPackets,
            receivedBytes: lhs.receivedBytes + rhs.receivedBytes,
            sentPackets: lhs.sentPackets + rhs.sentPackets,
            sentBytes: lhs.sentBytes + rhs.sentBytes,
            tcpAccepted: lhs.tcpAccepted + rhs.tcpAccepted,
            tcpActive: lhs.tcpActive + rhs.tcpActive,
            tcpClosed: lhs.tcpClosed + rhs.tcpClosed,
            drops: rhs.drops.isEmpty ? lhs.drops : lhs.drops.merging(rhs.drops, uniquingKeysWith: +)
        )
    }
}
