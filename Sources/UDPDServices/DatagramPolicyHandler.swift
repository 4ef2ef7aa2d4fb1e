import UDPDConfig
import UDPDTransport

/// What a service's UDP policy checks before its handler sees a datagram: `max-datagram`, `allow`/`deny` and the
/// per-source `rate-limit`, in that order (cheapest first; a refused source does not spend tokens).
public struct DatagramPolicy: Sendable {
    /// The largest datagram served, in bytes; `nil` for no limit beyond the receive buffer.
    public var maxDatagram: Int?
    /// Who may be served.
    public var filter: AddressFilter
    /// The per-source limit, if any.
    public var limiter: SourceRateLimiter?

    /// The policy of `service`; `nil` when it sets none of the keys, so that unlimited services pay nothing.
    public init?(_ service: ServiceDefinition) {
        maxDatagram = service.maxDatagram
        filter = AddressFilter(allow: service.allow, deny: service.deny)
        limiter = service.rateLimit.map(SourceRateLimiter.init)
        if maxDatagram == nil && filter.isEmpty && limiter == nil { return nil }
    }

    /// Why a datagram of `length` bytes from `peer` must be dropped, or `nil` when it may be served.
    public func refusal(length: Int, peer: IPEndpoint) -> DropReason? {
        if let maxDatagram, length > maxDatagram { return .oversize }
        if filter.isEmpty && limiter == nil { return nil }
        let address = peer.addressBits
        if !filter.admits(address) { return .denied }
        if let limiter, !limiter.admit(address) { return .rateLimited }
        return nil
    }
}

/// Runs a service's ``DatagramPolicy`` in front of its handler: a refused datagram is counted by reason and never
/// reaches the handler, while the service and every other source go on being served.
public struct DatagramPolicyHandler: DatagramHandler {
    /// The checks.
    public let policy: DatagramPolicy
    /// The service's own handler.
    public let inner: any DatagramHandler

    /// Puts `policy` in front of `inner`.
    public init(policy: DatagramPolicy, inner: any DatagramHandler) {
        self.policy = policy
        self.inner = inner
    }

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        if let reason = policy.refusal(length: length, peer: peer) { return .drop(reason) }
        return inner.handle(buffer, length: length, peer: peer, destination: destination, replier: replier)
    }
}
