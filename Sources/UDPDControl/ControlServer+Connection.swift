import Logging
import NIOCore

/// One accepted control connection: its framed channel and who is on the other end.
struct ControlConnection: Sendable {
    /// Request lines in, response lines out.
    var channel: NIOAsyncChannel<LineFrame, ByteBuffer>
    /// The peer's credentials.
    var peer: ControlPeer

    /// Builds a new connection's pipeline (line framing with the size cap, the request deadline) and reads its
    /// peer's credentials; runs on the child channel's event loop.
    static func setUp(
        _ channel: any Channel,
        timeout: TimeAmount,
        logger: Logger
    ) -> EventLoopFuture<ControlConnection> {
        ControlPeer.read(from: channel).flatMapThrowing { peer in
            let operations = channel.pipeline.syncOperations
            try operations.addHandler(
                ByteToMessageHandler(LineFrameDecoder(maximumLength: ControlProtocol.maximumRequestSize))
            )
            try operations.addHandler(ReadDeadlineHandler(timeout: timeout, logger: logger))
            let framed = try NIOAsyncChannel<LineFrame, ByteBuffer>(wrappingChannelSynchronously: channel)
            return ControlConnection(channel: framed, peer: peer)
        }
    }

    /// Answers request lines until the peer closes, the deadline closes the connection, a line is too long, or the
    /// task is cancelled. Never throws: a broken connection concerns only its peer.
    func serve(
        handler: @Sendable (ControlRequest, ControlPeer) async -> ControlResponse,
        logger: Logger
    ) async {
        var logger = logger
        logger[metadataKey: "peer_uid"] = "\(peer.uid.map(String.init) ?? "?")"
        logger[metadataKey: "peer_pid"] = "\(peer.pid.map(String.init) ?? "?")"
        do {
            try await channel.executeThenClose { requests, responses in
                for try await frame in requests {
                    switch frame {
                    case .line(let line):
                        let response = await answer(line, handler: handler, logger: logger)
                        try await responses.write(Self.encode(response, logger: logger))
                    case .oversized:
                        let error = ControlProtocolError(
                            .requestTooLarge,
                            detail: "a request line may be at most \(ControlProtocol.maximumRequestSize) bytes"
                        )
                        logger.warning("control request refused, closing the connection: \(error)")
                        try await responses.write(Self.encode(.failure(error.description), logger: logger))
                        return
                    }
                }
            }
        } catch {
            logger.debug("control connection ended: \(error)")
        }
    }

    /// Answers a peer that may not use the socket with one error line, then closes the connection.
    func refuse(logger: Logger) async {
        let uid = peer.uid.map(String.init) ?? "unknown"
        logger.notice(
            "control connection refused: uid \(uid) may not use the control socket",
            metadata: ["peer_pid": "\(peer.pid.map(String.init) ?? "?")"]
        )
        let message = "permission denied: uid \(uid) may not use this control socket (see control.mode)"
        // Answer the first request (or the deadline's close), so that the client reads the error instead of
        // finding the connection gone while it writes.
        try? await channel.executeThenClose { requests, responses in
            for try await _ in requests {
                try await responses.write(Self.encode(.failure(message), logger: logger))
                return
            }
        }
    }

    /// Decodes one line and hands it to `handler`, or explains what is wrong with it.
    private func answer(
        _ line: ByteBuffer,
        handler: @Sendable (ControlRequest, ControlPeer) async -> ControlResponse,
        logger: Logger
    ) async -> ControlResponse {
        let request: ControlRequest
        do {
            request = try ControlProtocol.decodeRequest(line.readableBytesView)
        } catch {
            logger.info("control request refused: \(error)")
            return .failure(error.description)
        }
        if request.command == .reload {
            logger.notice("reload requested over the control socket")
        } else {
            logger.debug("control request", metadata: ["command": "\(request.command.rawValue)"])
        }
        return await handler(request, peer)
    }

    /// One response line, written directly (a NaN or infinity is written as 0, so nothing fails to encode).
    private static func encode(_ response: ControlResponse, logger: Logger) -> ByteBuffer {
        ByteBuffer(bytes: ControlProtocol.encodeResponseLine(response))
    }
}
