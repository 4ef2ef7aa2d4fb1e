#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The control protocol spoken between `udpd` and `udpctl` over a Unix stream socket.
///
/// Each side writes one JSON object per line (UTF-8, terminated by `\n`). The client sends a ``ControlRequest``;
/// the daemon answers every request line with exactly one ``ControlResponse`` line. A connection may carry several
/// requests in sequence. A request line longer than ``maximumRequestSize`` bytes is answered with an error and the
/// connection is closed.
public enum ControlProtocol {
    /// The protocol version this build speaks; requests carrying another version are refused.
    public static let version = 1

    /// The longest request line the daemon accepts, in bytes, not counting the newline (64 KiB).
    public static let maximumRequestSize = 64 * 1024

    /// Encodes `value` as one line of compact JSON with sorted keys, including the trailing newline.
    public static func encodeLine<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = [UInt8](try encoder.encode(value))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Decodes one request line (without its newline), telling apart the ways it can be wrong.
    ///
    /// - Throws: ``ControlProtocolError`` for text that is not JSON, a version other than ``version``, or a
    ///   missing or unknown command.
    public static func decodeRequest(_ line: some Collection<UInt8>) throws(ControlProtocolError) -> ControlRequest {
        let envelope: RequestEnvelope
        do {
            envelope = try JSONDecoder().decode(RequestEnvelope.self, from: Data(line))
        } catch {
            throw ControlProtocolError(.invalidJSON, detail: Self.summary(of: error))
        }
        guard let version = envelope.version else {
            throw ControlProtocolError(.unsupportedVersion, detail: "the request has no \"version\"")
        }
        guard version == Self.version else {
            throw ControlProtocolError(
                .unsupportedVersion,
                detail: "version \(version) requested, this daemon speaks version \(Self.version)"
            )
        }
        guard let name = envelope.command else {
            throw ControlProtocolError(.unknownCommand, detail: "the request has no \"command\"")
        }
        guard let command = ControlCommand(rawValue: name) else {
            let known = ControlCommand.allCases.map(\.rawValue).joined(separator: ", ")
            throw ControlProtocolError(.unknownCommand, detail: "\"\(name)\" is not one of \(known)")
        }
        return ControlRequest(version: version, command: command, binary: envelope.binary)
    }

    /// Decodes one response line (without its newline).
    public static func decodeResponse(_ line: some Collection<UInt8>) throws(ControlProtocolError) -> ControlResponse {
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        } catch {
            throw ControlProtocolError(.invalidJSON, detail: Self.summary(of: error))
        }
    }

    /// A one-line account of a decoding error, without Foundation's debug dump.
    private static func summary(of error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            return context.debugDescription
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, _):
            return "missing key \"\(key.stringValue)\""
        default:
            return "\(error)"
        }
    }

    /// The loosest reading of a request, so that a bad version and an unknown command get their own messages.
    private struct RequestEnvelope: Decodable {
        var version: Int?
        var command: String?
        var binary: String?
    }
}

/// What a request line got wrong; the daemon sends its ``description`` back as the response's `error`.
public struct ControlProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kinds of malformed messages.
    public enum Code: String, Sendable, Equatable {
        /// The line is not a JSON object of the expected shape.
        case invalidJSON = "invalid JSON"
        /// The request's `version` is missing or not ``ControlProtocol/version``.
        case unsupportedVersion = "unsupported protocol version"
        /// The request's `command` is missing or not a ``ControlCommand``.
        case unknownCommand = "unknown command"
        /// The request line is longer than ``ControlProtocol/maximumRequestSize``.
        case requestTooLarge = "request too large"
    }

    /// What kind of problem it is.
    public var code: Code
    /// The specifics, for a person.
    public var detail: String

    /// Creates an error.
    public init(_ code: Code, detail: String) {
        self.code = code
        self.detail = detail
    }

    /// `KIND: DETAIL`, as sent back in the response's `error`.
    public var description: String { "\(code.rawValue): \(detail)" }
}

/// The commands the daemon understands.
public enum ControlCommand: String, Codable, Sendable, CaseIterable {
    /// Report the daemon's state: a ``StatusReport``.
    case status
    /// Reload the configuration file now and report the outcome: a ``ReloadReport``.
    case reload
    /// Report the metrics in the Prometheus text format.
    case metrics
    /// Start a new udpd (``ControlRequest/binary``, or the daemon's own executable), hand it every listening
    /// socket, and once it serves, stop: an ``UpgradeReport``.
    case upgrade
}

/// One request from a client.
public struct ControlRequest: Codable, Sendable, Equatable {
    /// The protocol version the client speaks; ``ControlProtocol/version`` unless testing the daemon.
    public var version: Int
    /// What the client asks for.
    public var command: ControlCommand
    /// For `upgrade`: the executable to start instead of the daemon's own; `nil` (left out) otherwise.
    public var binary: String?

    /// Creates a request for `command` in the current protocol version.
    public init(version: Int = ControlProtocol.version, command: ControlCommand, binary: String? = nil) {
        self.version = version
        self.command = command
        self.binary = binary
    }

    private enum CodingKeys: String, CodingKey {
        case version
        case command
        case binary
    }
}

/// The daemon's answer to one request: `ok` and, per command, one of `status`, `reload` or `metrics`.
public struct ControlResponse: Codable, Sendable, Equatable {
    /// The protocol version of the daemon.
    public var version: Int
    /// Whether the request succeeded; for `reload`, whether the new configuration was applied.
    public var ok: Bool
    /// Why the request failed, when `ok` is false.
    public var error: String?
    /// The answer to `status`.
    public var status: StatusReport?
    /// The answer to `reload` (also present when the reload was rejected).
    public var reload: ReloadReport?
    /// The answer to `metrics`: Prometheus text exposition.
    public var metrics: String?
    /// The answer to `upgrade`, when the new daemon serves (a failed upgrade has `ok` false and `error`).
    public var upgrade: UpgradeReport?

    /// Creates a response.
    public init(
        version: Int = ControlProtocol.version,
        ok: Bool,
        error: String? = nil,
        status: StatusReport? = nil,
        reload: ReloadReport? = nil,
        metrics: String? = nil,
        upgrade: UpgradeReport? = nil
    ) {
        self.version = version
        self.ok = ok
        self.error = error
        self.status = status
        self.reload = reload
        self.metrics = metrics
        self.upgrade = upgrade
    }

    /// A failed response carrying `message`.
    public static func failure(_ message: String) -> ControlResponse {
        ControlResponse(ok: false, error: message)
    }

    enum CodingKeys: String, CodingKey {
        case version
        case ok
        case error
        case status
        case reload
        case metrics
        case upgrade
    }
}

/// What an upgrade did: which process serves now, and which one it took over from.
public struct UpgradeReport: Codable, Sendable, Equatable {
    /// The new daemon's process id.
    public var pid: Int32
    /// The process id of the daemon that was replaced (and is now finishing its connections).
    public var previousPID: Int32

    /// Creates a report.
    public init(pid: Int32, previousPID: Int32) {
        self.pid = pid
        self.previousPID = previousPID
    }

    enum CodingKeys: String, CodingKey {
        case pid
        case previousPID = "previous_pid"
    }
}
