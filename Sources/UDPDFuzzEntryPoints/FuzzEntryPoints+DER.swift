import UDPDKerberos

extension FuzzEntryPoints {
    /// The DER reader: what it accepts is DER, so re-encoding the tree it read gives back the same bytes; the
    /// in-place walk and the tree agree; the Kerberos reply decoder never traps; and a
    /// request the KDC-REQ parser accepts gets an over-limit answer that decodes. The first byte picks the depth
    /// limit, so that the fuzzer also reaches the limit.
    public static func der(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        let limits = DERReader.Limits(maxDepth: 1 + Int(first % 24), maxLength: 1 << 16)
        let input = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())
        let tree = Result { () throws(DERError) in try DERNode.parse(input, limits: limits) }
        let walked = Result { () throws(DERError) -> Int in
            var reader = try DERReader(input, limits: limits)
            let count = try reader.skipAll()
            precondition(reader.isAtEnd, "a walk that succeeded left bytes unread")
            return count
        }
        switch (tree, walked) {
        case (.success(let node), .success(let count)):
            precondition(node.encoded.elementsEqual(input), "accepted bytes do not re-encode identically")
            precondition(node.encodedCount == input.count, "the encoder miscounts its own length")
            precondition(count >= 1 && count == elements(node), "the walk and the tree disagree")
        case (.failure(let error), _):
            precondition(error.offset >= 0 && error.offset <= input.count, "error outside the input: \(error)")
        case (.success, .failure(let error)):
            // A walk may see several top-level elements where the tree wants one, never fail on what the tree read.
            preconditionFailure("the tree read what the walk rejected: \(error)")
        }
        _ = try? KerberosReply.decode(input, limits: limits)
        overLimitAnswer(input, limits: limits)
    }

    /// The over-limit answer: a request the parser accepts is rewritten in a copy, and the answer is never longer
    /// than the request and always decodes as KRB_ERR_RESPONSE_TOO_BIG.
    private static func overLimitAnswer(_ input: UnsafeRawBufferPointer, limits: DERReader.Limits) {
        guard let request = try? KerberosKDCRequest.parse(input, limits: limits) else { return }
        precondition(request.realm.upperBound <= request.server.lowerBound, "realm and sname out of order")
        var copy = Array(input)
        let length = copy.withUnsafeMutableBytes { buffer in
            KerberosTooBigAnswer.rewrite(buffer, length: input.count, request: request, seconds: 0, microseconds: 0)
        }
        guard let length else { return }
        precondition(length <= input.count, "an answer longer than its request")
        let reply = copy.withUnsafeBytes { bytes in
            try? KerberosReply.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), limits: .kerberos)
        }
        precondition(reply == .error(code: Int64(KerberosErrorMessage.responseTooBig)), "the answer does not decode")
    }

    private static func elements(_ node: DERNode) -> Int {
        guard case .constructed(_, let children) = node else { return 1 }
        return 1 + children.reduce(0) { $0 + elements($1) }
    }
}
