#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One IP address configured on one of the host's interfaces.
public struct InterfaceAddress: Sendable, Hashable, CustomStringConvertible {
    /// The interface's name (`eth0`, `lo`).
    public var interface: String
    /// The address, port 0; an IPv6 link-local address carries its interface as scope (`fe80::1%eth0`).
    public var endpoint: IPEndpoint

    /// Creates an entry.
    public init(interface: String, endpoint: IPEndpoint) {
        self.interface = interface
        self.endpoint = endpoint
    }

    /// `10.0.0.1 on eth0`.
    public var description: String { "\(endpoint.addressText) on \(interface)" }
}

/// The host's IP addresses as `getifaddrs` lists them now: what `bind: per-address` binds, and what explicit
/// `bind:` addresses are checked against.
public enum InterfaceAddresses {
    /// Every IPv4 and IPv6 address of every interface, each once, in the order the kernel lists them.
    ///
    /// Tentative IPv6 addresses (still in duplicate address detection) are included: they become usable within
    /// seconds, and binding them is retried until they are.
    public static func current() throws(SystemCallError) -> [InterfaceAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        try systemCall("getifaddrs") { getifaddrs(&list) }
        defer { freeifaddrs(list) }
        var result: [InterfaceAddress] = []
        var seen: Set<InterfaceAddress> = []
        var cursor = list
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let address = entry.pointee.ifa_addr, var endpoint = IPEndpoint(UnsafeRawPointer(address)) else {
                continue
            }
            endpoint.port = 0
            let name = String(cString: entry.pointee.ifa_name)
            // Linux fills in the scope of link-local addresses; other platforms may not, or embed it in the address.
            if endpoint.isLinkLocal, let v6 = endpoint.in6Addr {
                endpoint = IPEndpoint(v6: clearingEmbeddedScope(v6), scope: if_nametoindex(name), port: 0)
            }
            let item = InterfaceAddress(interface: name, endpoint: endpoint)
            if seen.insert(item).inserted { result.append(item) }
        }
        return result
    }

    /// Whether the kernel would bind `address` now: `false` only when a trial bind of a UDP socket to it (port 0)
    /// fails with EADDRNOTAVAIL. This also accepts addresses that local routes make the host's without an
    /// interface listing them (all of 127.0.0.0/8 on Linux, AnyIP routes).
    public static func isBindable(_ address: IPEndpoint) -> Bool {
        var trial = address
        trial.port = 0
        do {
            let socket = try UDPListenerSocket.bind(trial)
            socket.close()
            return true
        } catch {
            return error.code != .addressNotAvailable
        }
    }

    /// KAME-derived stacks (the BSDs, macOS) keep the interface index in bytes 2-3 of a link-local address.
    private static func clearingEmbeddedScope(_ address: in6_addr) -> in6_addr {
        #if os(Linux)
        return address
        #else
        var copy = address
        withUnsafeMutableBytes(of: &copy) { bytes in
            bytes[2] = 0
            bytes[3] = 0
        }
        return copy
        #endif
    }
}
