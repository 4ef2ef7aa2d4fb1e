import Testing
import UDPDConfig
import UDPDTransport

@testable import UDPDServices

@Suite("The building blocks of the limits")
struct LimitPrimitivesTests {
    func bits(_ address: String) -> IPAddressBits { IPEndpoint(address: address, port: 0)!.addressBits }

    @Test("allow/deny: deny wins, an empty allow admits everyone not denied, families never cross")
    func addressFilter() {
        let v4 = AddressPrefix(address: BindAddress(text: "10.0.0.0", family: .ipv4), length: 8)
        let hole = AddressPrefix(address: BindAddress(text: "10.9.0.0", family: .ipv4), length: 16)
        let v6 = AddressPrefix(address: BindAddress(text: "2001:db8::", family: .ipv6), length: 32)
        let filter = AddressFilter(allow: [v4, v6], deny: [hole])
        #expect(filter.admits(bits("10.1.2.3")))
        #expect(!filter.admits(bits("10.9.2.3")))
        #expect(!filter.admits(bits("11.0.0.1")))
        #expect(filter.admits(bits("2001:db8:1::1")))
        #expect(!filter.admits(bits("2001:db9::1")))
        #expect(!filter.admits(bits("::ffff:11.0.0.1")))
        let denyOnly = AddressFilter(allow: [], deny: [v4])
        #expect(denyOnly.admits(bits("192.0.2.1")))
        #expect(!denyOnly.admits(bits("10.0.0.1")))
        let everything = AddressFilter(
            allow: [AddressPrefix(address: BindAddress(text: "0.0.0.0", family: .ipv4), length: 0)],
            deny: []
        )
        #expect(everything.admits(bits("203.0.113.9")))
        #expect(!everything.admits(bits("::1")))
    }

    @Test("rate limiter: the burst, then the rate; sources do not share buckets")
    func tokenBucket() {
        let limiter = SourceRateLimiter(RateLimit(perSecond: 10, burst: 3))
        let a = bits("192.0.2.1")
        let b = bits("192.0.2.2")
        let second: UInt64 = 1_000_000_000
        let admitted = (0..<10).filter { _ in limiter.admit(a, at: second) }.count
        #expect(admitted == 3)
        #expect(limiter.admit(b, at: second))
        #expect(!limiter.admit(a, at: second + second / 20))
        #expect(limiter.admit(a, at: second + second / 10 + 1))
        // A long pause refills to the burst, not beyond.
        let later = (0..<10).filter { _ in limiter.admit(a, at: 100 * second) }.count
        #expect(later == 3)
    }

    @Test("rate limiter: a flood of distinct sources stays within the table and evicts the least recent")
    func tokenBucketFlood() {
        let limiter = SourceRateLimiter(RateLimit(perSecond: 1, burst: 1))
        let victim = bits("198.51.100.7")
        #expect(limiter.admit(victim, at: 1))
        #expect(!limiter.admit(victim, at: 2))
        for index in 0..<(4 * SourceRateLimiter.capacity) {
            _ = limiter.admit(IPAddressBits(high: 0x2001_0db8_0000_0000, low: UInt64(index)), at: 3)
        }
        // Evicted by the flood: it starts again with a full bucket (the limit fails open, never closed).
        #expect(limiter.admit(victim, at: 4))
    }

    @Test("krb5 framing: messages split anywhere are followed, bad lengths are refused")
    func frameDecoder() throws {
        let stream: [UInt8] = [0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 2, 9]
        for split in 0...stream.count {
            var decoder = KerberosFrameDecoder(maxMessage: 10)
            var completed = 0
            var inMessage = false
            for part in [stream[..<split], stream[split...]] {
                let progress = try Array(part).withUnsafeBytes { bytes in try decoder.consume(bytes) }
                completed += progress.completed
                inMessage = progress.inMessage
            }
            #expect(completed == 2, "split at \(split)")
            #expect(inMessage)
        }
        var decoder = KerberosFrameDecoder(maxMessage: 10)
        #expect(throws: KerberosFrameDecoder.Failure.tooLong(length: 11, limit: 10)) {
            try [UInt8]([0, 0, 0, 11]).withUnsafeBytes { bytes in try decoder.consume(bytes) }
        }
        #expect(throws: KerberosFrameDecoder.Failure.tooLong(length: 11, limit: 10)) {
            try [UInt8]([0]).withUnsafeBytes { bytes in try decoder.consume(bytes) }
        }
        var reserved = KerberosFrameDecoder(maxMessage: 10)
        #expect(throws: KerberosFrameDecoder.Failure.reservedBit(length: 0x8000_0001)) {
            try [UInt8]([0x80, 0, 0, 1]).withUnsafeBytes { bytes in try reserved.consume(bytes) }
        }
    }

    @Test("reflection guard: port 0, the listed ports, multicast and broadcast are refused")
    func reflectionGuard() {
        for port in ReflectionGuard.refusedSourcePorts + [0] {
            #expect(ReflectionGuard.refuses(IPEndpoint(address: "192.0.2.1", port: port)!))
        }
        #expect(!ReflectionGuard.refuses(IPEndpoint(address: "192.0.2.1", port: 40_000)!))
        #expect(!ReflectionGuard.refuses(IPEndpoint(address: "192.0.2.1", port: 8)!))
        #expect(ReflectionGuard.refuses(IPEndpoint(address: "224.0.0.1", port: 40_000)!))
        #expect(ReflectionGuard.refuses(IPEndpoint(address: "255.255.255.255", port: 40_000)!))
        #expect(ReflectionGuard.refuses(IPEndpoint(address: "ff02::1", port: 40_000)!))
    }
}
