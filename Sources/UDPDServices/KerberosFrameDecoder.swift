/// Follows the message boundaries of a `framing: krb5` TCP stream (RFC 4120 7.2.2, RFC 3244): each message is a
/// 4-byte big-endian length, whose high bit is reserved and must be clear, followed by that many bytes.
///
/// It only counts and checks; the bytes pass on unchanged. It keeps five integers whatever the input, holds
/// nothing back, and never allocates, so a hostile stream costs nothing but the time to look at it.
public struct KerberosFrameDecoder: Sendable, Equatable {
    /// Why a stream is not a valid krb5 stream.
    public enum Failure: Error, Sendable, Equatable {
        /// A length with the reserved high bit set (RFC 4120 reserves it for extensions nobody implements).
        case reservedBit(length: UInt32)
        /// A length over `max-message`.
        case tooLong(length: UInt32, limit: Int)
    }

    /// What one call to ``consume(_:)`` saw.
    public struct Progress: Sendable, Equatable {
        /// Messages whose last byte was among the input.
        public var completed: Int
        /// Whether a message (or its length) had started but not finished when the input ended.
        public var inMessage: Bool

        /// Creates a progress report.
        public init(completed: Int, inMessage: Bool) {
            self.completed = completed
            self.inMessage = inMessage
        }
    }

    /// The largest message accepted, in bytes (not counting the length itself).
    public let maxMessage: Int
    private var header: UInt32 = 0
    private var headerBytes = 0
    private var remaining = 0
    private var failure: Failure?

    /// Creates a decoder at the start of a stream.
    public init(maxMessage: Int) {
        self.maxMessage = maxMessage
    }

    /// Whether the stream stands between two messages.
    public var isBetweenMessages: Bool { headerBytes == 0 }

    /// Takes the next bytes of the stream. After a failure every later call fails the same way.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Progress {
        if let failure { throw failure }
        var completed = 0
        var index = 0
        let count = bytes.count
        while index < count {
            if headerBytes < 4 {
                header = header << 8 | UInt32(bytes[index])
                headerBytes += 1
                index += 1
                guard headerBytes == 4 else { continue }
                if header & 0x8000_0000 != 0 {
                    failure = .reservedBit(length: header)
                } else if Int(header) > maxMessage {
                    failure = .tooLong(length: header, limit: maxMessage)
                }
                if let failure { throw failure }
                remaining = Int(header)
            } else {
                let taken = min(remaining, count - index)
                index += taken
                remaining -= taken
            }
            if headerBytes == 4 && remaining == 0 {
                completed += 1
                headerBytes = 0
                header = 0
            }
        }
        return Progress(completed: completed, inMessage: headerBytes > 0)
    }
}
