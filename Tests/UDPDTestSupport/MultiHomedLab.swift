import Foundation
import Synchronization

/// Three network namespaces made for one test and removed when it ends, whatever happens: a multi-homed server
/// and two clients on different subnets.
///
///     client A  eth0 10.201.1.10  fd00:201:1::10 ---- eth1 10.201.1.1 10.201.1.2 fd00:201:1::1   server
///     client B  eth0 10.201.2.10  fd00:201:2::10 ---- eth2 10.201.2.1            fd00:201:2::1
///
/// Every link also has its IPv6 link-local addresses (through duplicate address detection, so tentative for about
/// a second). Each client routes the other subnet through the server, so it can reach every server address, and a
/// reply from the wrong address is dropped by its connected socket.
public final class MultiHomedLab {
    /// The server namespace's name.
    public let server: String
    /// Client A's namespace (on the server's eth1).
    public let clientA: String
    /// Client B's namespace (on the server's eth2).
    public let clientB: String

    /// The server's global addresses on eth1 (two IPv4 and one IPv6).
    public static let serverAddressesA = ["10.201.1.1", "10.201.1.2", "fd00:201:1::1"]
    /// The server's global addresses on eth2.
    public static let serverAddressesB = ["10.201.2.1", "fd00:201:2::1"]

    private static let ip = "/usr/sbin/ip"
    private static let counter = Atomic<Int>(0)

    /// Creates the namespaces and links; throws (after removing what it made) when a step fails or without root.
    public init() throws {
        guard isRoot else { throw TestFailure("network namespaces need root") }
        Self.removeStaleNamespaces()
        let tag = "udpd-\(getpid())-\(Self.counter.add(1, ordering: .relaxed).newValue)"
        server = "\(tag)-s"
        clientA = "\(tag)-a"
        clientB = "\(tag)-b"
        do {
            try build()
        } catch {
            remove()
            throw error
        }
    }

    private func build() throws {
        for namespace in [server, clientA, clientB] {
            try ip(["netns", "add", namespace])
            try ip(["-n", namespace, "link", "set", "lo", "up"])
        }
        for (client, serverLink, subnet) in [(clientA, "eth1", 1), (clientB, "eth2", 2)] {
            try ip(["-n", server, "link", "add", serverLink, "type", "veth", "peer", "name", "eth0", "netns", client])
            try ip(["-n", server, "addr", "add", "10.201.\(subnet).1/24", "dev", serverLink])
            try ip(["-n", server, "addr", "add", "fd00:201:\(subnet)::1/64", "dev", serverLink, "nodad"])
            try ip(["-n", client, "addr", "add", "10.201.\(subnet).10/24", "dev", "eth0"])
            try ip(["-n", client, "addr", "add", "fd00:201:\(subnet)::10/64", "dev", "eth0", "nodad"])
            try ip(["-n", server, "link", "set", serverLink, "up"])
            try ip(["-n", client, "link", "set", "eth0", "up"])
            try ip(["-n", client, "route", "add", "10.201.0.0/16", "via", "10.201.\(subnet).1"])
            try ip(["-n", client, "-6", "route", "add", "fd00:201::/32", "via", "fd00:201:\(subnet)::1"])
        }
        try ip(["-n", server, "addr", "add", "10.201.1.2/24", "dev", "eth1"])
    }

    /// Runs `ip ARGS...`; throws with its output when it fails.
    public func ip(_ arguments: [String]) throws {
        let result = try runCommand(Self.ip, arguments, timeout: 10)
        guard result.status == 0 else {
            throw TestFailure("ip \(arguments.joined(separator: " ")): \(result.standardError)")
        }
    }

    /// The command prefix that runs a program inside `namespace`.
    public func launcher(_ namespace: String) -> [String] { [Self.ip, "netns", "exec", namespace] }

    /// Runs the built `udpd-testclient ARGS...` inside `namespace` to its end.
    public func client(_ namespace: String, _ arguments: [String], timeout: TimeInterval = 30) throws -> CommandResult {
        try runCommand(
            Self.ip,
            ["netns", "exec", namespace, BuiltProducts.path("udpd-testclient")] + arguments,
            timeout: timeout
        )
    }

    /// The link-local address of `device` in `namespace`, once duplicate address detection is over, with
    /// `%scope` naming the device as seen from `viewedFrom` (a device in the namespace that will use it).
    public func linkLocal(
        _ namespace: String,
        _ device: String,
        scope: String,
        timeout: Duration = .seconds(10)
    )
        throws -> String
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let shown = try runCommand(
                Self.ip,
                [
                    "-n", namespace, "-6", "-o", "addr", "show", "dev", device,
                    "scope", "link",
                ]
            )
            if !shown.standardOutput.contains("tentative"),
                let word = shown.standardOutput.split(separator: " ").first(where: { $0.hasPrefix("fe80:") })
            {
                return "\(word.split(separator: "/")[0])%\(scope)"
            }
            usleep(50_000)
        }
        throw TestFailure("no usable link-local address on \(device) in \(namespace) within \(timeout)")
    }

    /// Deletes the namespaces (and with them the links and addresses).
    private func remove() {
        for namespace in [server, clientA, clientB] {
            _ = try? runCommand(Self.ip, ["netns", "delete", namespace], timeout: 10)
        }
    }

    /// Removes namespaces left by test processes that died before cleaning up (`udpd-PID-N-x` with PID gone).
    private static func removeStaleNamespaces() {
        guard let listed = try? runCommand(ip, ["netns", "list"], timeout: 10) else { return }
        for line in listed.standardOutput.split(separator: "\n") {
            let name = String(line.split(separator: " ")[0])
            let parts = name.split(separator: "-")
            guard parts.count == 4, parts[0] == "udpd", let pid = Int32(parts[1]), pid != getpid(),
                kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            _ = try? runCommand(ip, ["netns", "delete", name], timeout: 10)
        }
    }

    deinit {
        remove()
    }
}
