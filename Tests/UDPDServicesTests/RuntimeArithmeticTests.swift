import Testing
import UDPDConfig
import UDPDTransport

@testable import UDPDServices

/// Numbers from the configuration are bounded at validation, but the runtime must not trap on any of them either:
/// these values lie far beyond the bounds, as a future key or a lifted bound might bring them.
@Suite struct RuntimeArithmeticTests {
    @Test func durationsConvertWithoutTrapping() {
        #expect(Duration.seconds(30).saturatingNanoseconds == 30_000_000_000)
        #expect(Duration.milliseconds(1500).saturatingMilliseconds == 1500)
        #expect(Duration.seconds(20_000_000_000).saturatingNanoseconds == .max)
        #expect(Duration.seconds(Int64.max).saturatingNanoseconds == .max)
        #expect(Duration.seconds(Int64.max).saturatingMilliseconds == .max)
        #expect(Duration.seconds(-Int64.max).saturatingNanoseconds == .min)
        #expect(Duration.milliseconds(Int64.max).saturatingMilliseconds == .max)
    }

    /// `burst: 20000000000000` trapped computing a full bucket in millionths.
    @Test func rateLimiterTakesAnyBurstAndRate() {
        for limit in [
            RateLimit(perSecond: 100, burst: 20_000_000_000_000), RateLimit(perSecond: .max, burst: .max),
            RateLimit(perSecond: 1, burst: .max),
        ] {
            let limiter = SourceRateLimiter(limit)
            let source = IPAddressBits(high: 0, low: 0xffff_7f00_0001)
            #expect(limiter.admit(source, at: 1))
            #expect(limiter.admit(source, at: 2))
            #expect(limiter.admit(source, at: UInt64.max / 2))
            #expect(limiter.admit(source, at: UInt64.max))
        }
    }
}
