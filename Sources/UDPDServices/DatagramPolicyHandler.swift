import UDPDConfig
import UDPDKerberos
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a service's UDP policy checks before its handler sees a datagram: `max-datagram`, `allow`/`deny` and the
/// per-source `rate-limit`, in that order (cheapest first; a refused source does not spend tokens).
public struct DatagramPolicy: Sendable {
    /// The largest datagram served, in bytes; `nil` for no limit beyond the receive buffer.
    public var maxDatagram: Int?
    /// Who may be served.
    public var filter: AddressFilter
    /// The per-source limit, if any.
    public var limiter: SourceRateLimiter?
    /// What happens to a datagram over ``limiter``'s limit.
    public var overLimit: RateLimit.OverLimit

    /// The policy of `service`; `nil` when it sets none of the keys, so that unlimited services pay nothing.
    public init?(_ service: ServiceDefinition) {
        maxDatagram = service.maxDatagram
        filter = AddressFilter(allow: service.allow, deny: service.deny)
        limiter = service.rateLimit.map(SourceRateLimiter.init)
        overLimit = service.rateLimit?.overLimit ?? .drop
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
        switch policy.refusal(length: length, peer: peer) {
        case nil:
            return inner.handle(buffer, length: length, peer: peer, destination: destination, replier: replier)
        case .rateLimited? where policy.overLimit == .krb5TCP:
            return Self.redirectToTCP(buffer, length: length, peer: peer, counters: replier.counters)
        case let reason?:
            return .drop(reason)
        }
    }

    /// `over-limit: krb5-tcp`: a Kerberos AS-REQ or TGS-REQ over the limit is answered in place with
    /// KRB_ERR_RESPONSE_TOO_BIG, so that its client sends it again over TCP, where a source address cannot be forged;
    /// anything else (including a request whose answer would be longer, or a source udpd never answers) is dropped
    /// as `rate_limited`. The answer is never longer than the request, so a forged request is not amplified.
    static func redirectToTCP(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        counters: ListenerCounters
    ) -> DatagramVerdict {
        guard !ReflectionGuard.refuses(peer),
            let request = try? KerberosKDCRequest.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
        else { return .drop(.rateLimited) }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        guard
            let answer = KerberosTooBigAnswer.rewrite(
                buffer,
                length: length,
                request: request,
                seconds: Int64(now.tv_sec),
                microseconds: Int32(now.tv_nsec / 1000)
            )
        else { return .drop(.rateLimited) }
        counters.addDrop(.rateLimitedTCPRedirect)
        return .reply(length: answer)
    }
}
