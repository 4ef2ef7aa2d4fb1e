import CUDPD
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
    /// Whether systemd keeps descriptors for udpd (`$FDSTORE`, set by `FileDescriptorStoreMax=`, systemd 254).
    public let storesDescriptors: Bool

    /// Reads `NOTIFY_SOCKET` and `FDSTORE` from the environment; without a socket every notification is a no-op.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        storesDescriptors = path != nil && (environment["FDSTORE"].flatMap { Int($0) } ?? 0) > 0
    }

    /// Whether a notify socket was given.
    public var isEnabled: Bool { path != nil }

    /// `READY=1`: the daemon is serving.
    public func ready() { send("READY=1\nSTATUS=serving") }

    /// `MAINPID=` this process and `READY=1`: the new udpd of an upgrade serves, and is the service's main process
    /// from now on (systemd accepts it from a process other than the main one with `NotifyAccess=all`).
    public func readyAsMainProcess() { send("MAINPID=\(getpid())\nREADY=1\nSTATUS=serving (upgraded)") }

    /// `FDSTORE=1` with `FDNAME=name`: systemd keeps `descriptors` (copies of them) until udpd removes them or the
    /// service stops, and hands them back through `LISTEN_FDS` when udpd starts again.
    public func store(_ descriptors: [CInt], name: String) {
        // The kernel passes at most 253 descriptors per message (SCM_MAX_FD).
        for start in stride(from: 0, to: descriptors.count, by: 250) {
            let batch = Array(descriptors[start..<min(descriptors.count, start + 250)])
            send("FDSTORE=1\nFDNAME=\(name)", descriptors: batch)
        }
    }

    /// `FDSTOREREMOVE=1` with `FDNAME=name`: systemd closes every descriptor it keeps under that name.
    public func removeStored(name: String) { send("FDSTOREREMOVE=1\nFDNAME=\(name)") }

    /// `RELOADING=1` with the monotonic time, as `Type=notify-reload` requires.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// `STOPPING=1`.
    public func stopping() { send("STOPPING=1") }

    /// Sends `message`, with `descriptors` attached (SCM_RIGHTS) when there are any; failures are ignored, as
    /// sd_notify does: systemd's supervision must not stop the daemon.
    public func send(_ message: String, descriptors: [CInt] = []) {
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
        var bytes = Array(message.utf8)
        let rightsLength = descriptors.count * MemoryLayout<CInt>.size
        var control = [UInt8](repeating: 0, count: descriptors.isEmpty ? 0 : cudpd_cmsg_space(rightsLength))
        bytes.withUnsafeMutableBytes { payload in
            control.withUnsafeMutableBytes { controlBytes in
                withUnsafeMutablePointer(to: &address) { addressPointer in
                    var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                    withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr()
                        header.msg_name = UnsafeMutableRawPointer(addressPointer)
                        header.msg_namelen = length
                        header.msg_iov = vectorPointer
                        header.msg_iovlen = 1
                        if !descriptors.isEmpty {
                            header.msg_control = controlBytes.baseAddress
                            header.msg_controllen = controlBytes.count
                            if let cmsg = cudpd_cmsg_firsthdr(&header) {
                                cmsg.pointee.cmsg_level = SOL_SOCKET
                                cmsg.pointee.cmsg_type = CInt(SCM_RIGHTS)
                                cmsg.pointee.cmsg_len = cudpd_cmsg_len(rightsLength)
                                let data = UnsafeMutableRawPointer(cudpd_cmsg_data(cmsg))
                                descriptors.withUnsafeBytes { rights in
                                    data.copyMemory(from: rights.baseAddress!, byteCount: rights.count)
                                }
                            }
                        }
                        _ = try? systemCall("sendmsg", context: path) { sendmsg(socket, &header, 0) }
                    }
                }
            }
        }
    }
}
