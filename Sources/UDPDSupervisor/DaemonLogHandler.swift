import Logging
import Synchronization
import UDPDConfig

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The log level the daemon runs at; a reload that changes `log.level` changes it for every logger at once.
///
/// `Sendable`: the level is an atomic.
public final class DaemonLogLevel: Sendable {
    private let raw: Atomic<Int>

    /// Creates the shared level.
    public init(_ level: Logger.Level) {
        raw = Atomic(Self.index(of: level))
    }

    /// The level now.
    public var level: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.index(of: newValue), ordering: .relaxed) }
    }

    private static func index(of level: Logger.Level) -> Int {
        Logger.Level.allCases.firstIndex(of: level) ?? 2
    }
}

/// Writes one line per event to standard error: `udpd[PID]: LEVEL: message key=value ...`.
///
/// No timestamp: under systemd the journal adds one, and in a terminal the order is what matters.
public struct DaemonLogHandler: LogHandler {
    /// The shared level; the handler's own `logLevel` setter writes through to it.
    public let sharedLevel: DaemonLogLevel
    /// Metadata attached to every line of this logger.
    public var metadata: Logger.Metadata = [:]
    private let label: String

    /// Creates a handler for `label` that follows `sharedLevel`.
    public init(label: String, level: DaemonLogLevel) {
        self.label = label
        self.sharedLevel = level
    }

    public var logLevel: Logger.Level {
        get { sharedLevel.level }
        set { sharedLevel.level = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes the event as one line. The message and every metadata key and value are escaped
    /// (``TextEscaping``): they carry names, paths, commands and peer data from input, and a newline or an escape
    /// sequence in one of them must not forge a second log line or drive the terminal.
    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let fields = merged.keys.sorted().map {
            "\(TextEscaping.escaped($0))=\(TextEscaping.escaped("\(merged[$0]!)"))"
        }.joined(separator: " ")
        let message = TextEscaping.escaped("\(event.message)")
        let line = "udpd[\(getpid())]: \(event.level): \(message)\(fields.isEmpty ? "" : " " + fields)\n"
        writeToStandardError(line)
    }
}

/// Writes `text` to standard error with write(2), whole, retrying short writes and EINTR; errors are ignored, as a
/// logger has nowhere else to report them. (Plain write(2) keeps the daemon free of Foundation's FileHandle.)
public func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if written > 0 {
            offset += written
        } else if written < 0 && errno == EINTR {
            continue
        } else {
            return
        }
    }
}
