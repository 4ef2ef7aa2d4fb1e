import NIOCore

/// One frame of the control protocol, as cut by ``LineFrameDecoder``.
enum LineFrame: Sendable, Equatable {
    /// A line without its `\n` (and without a `\r` before it).
    case line(ByteBuffer)
    /// More than the decoder's limit arrived without a newline; nothing more will be decoded on this connection.
    case oversized
}

/// Cuts a byte stream into newline-terminated lines of at most `maximumLength` bytes.
///
/// Empty lines are skipped. When `maximumLength` bytes have arrived without a newline, the decoder emits
/// ``LineFrame/oversized`` once and then discards everything that follows, so a peer cannot make the daemon buffer
/// without bound. Bytes left without a newline at end of input are dropped: a request is a whole line.
///
/// Not `Sendable`: a decoder belongs to one channel's pipeline and lives on its event loop.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LineFrame

    /// The longest accepted line, not counting its newline.
    let maximumLength: Int
    /// Set once a line was too long; from then on input is discarded.
    private var discarding = false
    /// How far the current buffer has been searched for a newline, so each byte is looked at once.
    private var searched = 0

    /// Creates a decoder that accepts lines up to `maximumLength` bytes.
    init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if discarding {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        let limit = min(view.count, maximumLength + 1)
        let start = view.startIndex
        if let newline = view[(start + searched)..<(start + limit)].firstIndex(of: UInt8(ascii: "\n")) {
            searched = 0
            var length = newline - start
            let line = buffer.readSlice(length: length + 1)!
            if length > 0, line.getInteger(at: line.readerIndex + length - 1, as: UInt8.self) == UInt8(ascii: "\r") {
                length -= 1
            }
            if length > 0 {
                context.fireChannelRead(wrapInboundOut(.line(line.getSlice(at: line.readerIndex, length: length)!)))
            }
            return .continue
        }
        if view.count > maximumLength {
            discarding = true
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.fireChannelRead(wrapInboundOut(.oversized))
            return .needMoreData
        }
        searched = limit
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
