import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the kernel said about the host's addresses.
public struct AddressChange: Sendable, Hashable, CustomStringConvertible {
    /// What happened.
    public enum Kind: String, Sendable, Hashable {
        /// An address was added, or its flags changed (a tentative address finished duplicate address detection).
        case added
        /// An address was removed.
        case removed
        /// Notifications were lost (the socket's buffer overflowed): the whole address set must be read again.
        case resync
    }

    /// What happened.
    public var kind: Kind
    /// The address concerned, when the notification names one (`nil` for ``Kind/resync`` and on PF_ROUTE).
    public var address: IPEndpoint?
    /// Whether the address is still tentative (IFA_F_TENTATIVE): it exists but cannot be bound yet.
    public var isTentative: Bool

    /// Creates a change.
    public init(kind: Kind, address: IPEndpoint? = nil, isTentative: Bool = false) {
        self.kind = kind
        self.address = address
        self.isTentative = isTentative
    }

    /// `added 10.0.0.1 (tentative)`.
    public var description: String {
        var text = kind.rawValue
        if let address { text += " \(address.addressText)" }
        if isTentative { text += " (tentative)" }
        return text
    }
}

/// Listens to the kernel's address notifications (rtnetlink RTM_NEWADDR and RTM_DELADDR for IPv4 and IPv6 on
/// Linux; a PF_ROUTE socket on the BSDs and macOS) on a dedicated thread, and reports each one to `onChange`.
///
/// A thread rather than a SwiftNIO channel: NIO has no channel type for netlink or routing sockets, and the
/// blocking read of a few messages a minute is what `UDPWorker` already does with a thread and a wakeup pipe.
/// The notifications only say *that* something changed; the caller reads the whole set again with
/// ``InterfaceAddresses/current()``, so a lost or coalesced notification costs nothing but a reread.
///
/// `Sendable`: the socket and the wakeup pipe never change, and the thread handle is behind a mutex.
public final class AddressWatcher: Sendable {
    private let socket: SocketDescriptor
    private let wakeup: WakeupPipe
    private let thread: Mutex<WorkerThread?>

    /// Opens the notification socket and starts the thread; `onChange` runs on that thread.
    public init(onChange: @escaping @Sendable (AddressChange) -> Void) throws(SystemCallError) {
        let fd = try systemCall("socket", context: "address notifications") {
            openRawSocket(cudpd_address_socket_domain, cudpd_address_socket_protocol)
        }
        let socket = SocketDescriptor(taking: fd)
        #if os(Linux)
        try? socket.setOption(level: SOL_SOCKET, name: SO_RCVBUF, value: 1 << 20, "SO_RCVBUF netlink")
        var local = sockaddr_nl()
        local.nl_family = sa_family_t(AF_NETLINK)
        local.nl_groups = cudpd_address_groups
        _ = try withUnsafePointer(to: &local) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemCallError) in
                try systemCall("bind", context: "netlink address groups") {
                    Glibc.bind(fd, address, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
        }
        #endif
        let wakeup = try WakeupPipe()
        self.socket = socket
        self.wakeup = wakeup
        let thread = try WorkerThread(name: "udpd-addresses") {
            Self.run(socket: socket, wakeup: wakeup, onChange: onChange)
        }
        self.thread = Mutex(thread)
    }

    /// Stops the thread and closes the socket; safe to call twice.
    public func stop() {
        wakeup.wake()
        let taken = thread.withLock { current -> WorkerThread? in
            defer { current = nil }
            return current
        }
        taken?.join()
        socket.close()
    }

    deinit {
        stop()
    }

    private static func run(
        socket: SocketDescriptor,
        wakeup: WakeupPipe,
        onChange: @Sendable (AddressChange) -> Void
    ) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
        defer { buffer.deallocate() }
        let fd = socket.rawValue
        var fds = [
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            guard (try? systemCall("poll") { poll(&fds, 2, -1) }) != nil else { return }
            if fds[1].revents != 0 || fds[0].revents & Int16(POLLNVAL) != 0 { return }
            let received: Int?
            do {
                received = try nonBlockingSystemCall("recv", context: "address notifications") {
                    recv(fd, buffer.baseAddress, buffer.count, cudpd_msg_dontwait)
                }
            } catch {
                // ENOBUFS: the kernel dropped notifications; everything must be read again.
                onChange(AddressChange(kind: .resync))
                continue
            }
            guard let received, received > 0 else { continue }
            for change in parse(UnsafeMutableRawBufferPointer(rebasing: buffer[..<received])) {
                onChange(change)
            }
        }
    }

    #if os(Linux)
    /// The address changes in one read of the netlink socket.
    static func parse(_ bytes: UnsafeMutableRawBufferPointer) -> [AddressChange] {
        var changes: [AddressChange] = []
        var remaining = CInt(bytes.count)
        var header = bytes.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
        while cudpd_nlmsg_ok(header, remaining) != 0 {
            defer { header = cudpd_nlmsg_next(header, &remaining) }
            let type = CInt(header.pointee.nlmsg_type)
            if type == cudpd_nlmsg_overrun || type == cudpd_nlmsg_error {
                changes.append(AddressChange(kind: .resync))
                continue
            }
            guard type == cudpd_rtm_newaddr || type == cudpd_rtm_deladdr else { continue }
            let message = cudpd_nlmsg_data(header).assumingMemoryBound(to: ifaddrmsg.self)
            var flags = UInt32(message.pointee.ifa_flags)
            var local: IPEndpoint?
            var address: IPEndpoint?
            var length = cudpd_ifa_payload(header)
            var attribute = cudpd_ifa_rta(message)
            while cudpd_rta_ok(attribute, length) != 0 {
                defer { attribute = cudpd_rta_next(attribute, &length) }
                let kind = CInt(attribute.pointee.rta_type)
                let data = cudpd_rta_data(attribute)
                let size = Int(cudpd_rta_payload(attribute))
                if kind == cudpd_ifa_flags, size >= 4 {
                    flags = data.loadUnaligned(as: UInt32.self)
                } else if kind == cudpd_ifa_local || kind == cudpd_ifa_address {
                    let endpoint = endpointOf(
                        data,
                        size: size,
                        family: CInt(message.pointee.ifa_family),
                        index: message.pointee.ifa_index
                    )
                    if kind == cudpd_ifa_local { local = endpoint } else { address = endpoint }
                }
            }
            changes.append(
                AddressChange(
                    kind: type == cudpd_rtm_newaddr ? .added : .removed,
                    address: local ?? address,
                    isTentative: flags & cudpd_ifa_f_tentative != 0
                )
            )
        }
        return changes
    }

    private static func endpointOf(
        _ data: UnsafeMutableRawPointer,
        size: Int,
        family: CInt,
        index: UInt32
    )
        -> IPEndpoint?
    {
        switch family {
        case AF_INET where size >= 4:
            return IPEndpoint(v4: data.loadUnaligned(as: in_addr.self), port: 0)
        case AF_INET6 where size >= 16:
            let address = data.loadUnaligned(as: in6_addr.self)
            let isLinkLocal = withUnsafeBytes(of: address) { $0[0] == 0xfe && ($0[1] & 0xc0) == 0x80 }
            return IPEndpoint(v6: address, scope: isLinkLocal ? index : 0, port: 0)
        default:
            return nil
        }
    }
    #else
    /// The address changes in one read of the routing socket: `struct rt_msghdr` and its kin start with a
    /// 16-bit length, a version byte and the message type.
    static func parse(_ bytes: UnsafeMutableRawBufferPointer) -> [AddressChange] {
        var changes: [AddressChange] = []
        var offset = 0
        while offset + 4 <= bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = CInt(bytes[offset + 3])
            if type == cudpd_rtm_newaddr { changes.append(AddressChange(kind: .added)) }
            if type == cudpd_rtm_deladdr { changes.append(AddressChange(kind: .removed)) }
            guard length > 0 else { break }
            offset += length
        }
        return changes
    }
    #endif
}

/// `socket(domain, SOCK_RAW | SOCK_CLOEXEC, protocol)`, spelled for each C library.
private func openRawSocket(_ domain: CInt, _ proto: CInt) -> CInt {
    #if canImport(Glibc)
    Glibc.socket(domain, CInt(SOCK_RAW.rawValue) | cudpd_sock_cloexec, proto)
    #elseif canImport(Musl)
    Musl.socket(domain, SOCK_RAW | cudpd_sock_cloexec, proto)
    #else
    Darwin.socket(domain, SOCK_RAW | cudpd_sock_cloexec, proto)
    #endif
}
