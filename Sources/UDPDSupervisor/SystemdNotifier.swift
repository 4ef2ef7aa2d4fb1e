import UDPDTransport

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

/// Tells systemd about the daemon's state through `NOTIFY_SOCKET` (the sd_notify protocol: one datagram of
/// `KEY=VALUE` lines on a Unix datagram socket), without linking libsystemd.
///
/// `Sendable`: it holds only the socket path.
public struct SystemdNotifier: Sendable {
    private let path: String?

    /// Reads `NOTIFY_SOCKET` from the environment; without it every notification is a no-op.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether a notify socket was given.
    public var isEnabled: Bool { path != nil }

    /// `READY=1`: the daemon is serving.
    public func ready() { send("READY=1\nSTATUS=serving") }

    /// `RELOADING=1` with the monotonic time, as `Type=notify-reload` requires.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// `STOPPING=1`.
    public func stopping() { send("STOPPING=1") }

    /// Sends `message`; failures are ignored, as sd_notify does: systemd's supervision must not stop the daemon.
    public func send(_ message: String) {
        guard let path else { return }
        guard let socket = try? systemCall("socket", { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0) })
        else { return }
        defer { close(socket) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                try? systemCall("sendto", context: path) {
                    sendto(socket, bytes, bytes.count, 0, socketAddress, length)
                }
            }
        }
    }
}
