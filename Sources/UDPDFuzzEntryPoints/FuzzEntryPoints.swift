import UDPDConfig
import UDPDControl
import UDPDServices

/// The parsers that read bytes from outside, each behind one function that takes arbitrary bytes, must never
/// crash, and traps (`precondition`) when a property that must hold does not. libFuzzer drives them from
/// `Fuzz/`; `swift test` replays every file of `Fuzz/regressions/` through them.
public enum FuzzEntryPoints {
    /// The fuzz targets by the name of their corpus directory.
    public static let targets: [String: @Sendable (UnsafeRawBufferPointer) -> Void] = [
        "config": configLoader,
        "control-request": controlRequest,
        "kerberos-frame": kerberosFrame,
        "der": der,
    ]

    /// The configuration loader: any text either loads or yields errors whose positions are inside the text.
    public static func configLoader(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        do {
            _ = try ConfigurationLoader.parse(text: text, file: "fuzz.yaml")
        } catch {
            precondition(!error.errors.isEmpty, "a rejected configuration names no error")
            // YAML breaks lines at LF, CR and CRLF (and libyaml also at NEL, LS and PS): count them all, so that a
            // position after a lone CR is not mistaken for one outside the text.
            let breaks: Set<Unicode.Scalar> = ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"]
            let lines = text.unicodeScalars.count(where: { breaks.contains($0) }) + 2
            for item in error.errors {
                let line = item.description.split(separator: ":").dropFirst().first.flatMap { Int($0) }
                precondition(line.map { $0 >= 1 && $0 <= lines } ?? true, "error outside the text: \(item)")
            }
        }
    }

    /// The control request parser: any line decodes or fails with an error, never traps.
    public static func controlRequest(_ bytes: UnsafeRawBufferPointer) {
        _ = try? ControlProtocol.decodeRequest(bytes)
    }

    /// The krb5 framing decoder: the stream split anywhere (at the point the first byte names) gives the same
    /// messages and the same failure as the stream in one piece.
    public static func kerberosFrame(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        let limit = 1 << Int(first % 21)
        let stream = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())
        let split = stream.isEmpty ? 0 : Int(first) % (stream.count + 1)
        var whole = KerberosFrameDecoder(maxMessage: limit)
        let wholeOutcome = Result { () throws(KerberosFrameDecoder.Failure) in try whole.consume(stream) }
        var parts = KerberosFrameDecoder(maxMessage: limit)
        var completed = 0
        var partsOutcome: Result<KerberosFrameDecoder.Progress, KerberosFrameDecoder.Failure> =
            .success(.init(completed: 0, inMessage: false))
        for part in [stream[..<split], stream[split...]] {
            partsOutcome = Result { () throws(KerberosFrameDecoder.Failure) in
                try parts.consume(UnsafeRawBufferPointer(rebasing: part))
            }
            guard case .success(let progress) = partsOutcome else { break }
            completed += progress.completed
        }
        switch (wholeOutcome, partsOutcome) {
        case (.success(let progress), .success(let last)):
            precondition(progress.completed == completed, "split input completed a different number of messages")
            precondition(progress.inMessage == last.inMessage, "split input ends in a different state")
        case (.failure(let a), .failure(let b)):
            precondition(a == b, "split input failed differently")
        default:
            preconditionFailure("split input succeeded where whole input failed, or the reverse")
        }
    }
}
