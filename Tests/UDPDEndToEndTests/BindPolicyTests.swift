import Foundation
import Testing
import UDPDControl
import UDPDTestSupport

/// udpd on a multi-homed server in network namespaces the tests create: every bind policy answers every client on
/// every server address from that address, and per-address listeners follow addresses as they come and go.
@Suite(
    "bind policies on a multi-homed host (network namespaces)",
    .serialized,
    .enabled(if: isRoot, "skipped: network namespaces need root")
)
struct BindPolicyTests {
    /// How one policy is configured.
    enum Policy: String, CaseIterable, CustomStringConvertible {
        case wildcard, perAddress, explicit, fallback

        var description: String { rawValue }
    }

    @Test("every client reaches every server address over UDP, and the reply comes from it", arguments: Policy.allCases)
    func everyAddressAnswers(policy: Policy) throws {
        let lab = try MultiHomedLab()
        let port = try probeFreePort()
        let linkLocals = try LinkLocals(lab)
        let bind: String
        switch policy {
        case .wildcard, .fallback: bind = "wildcard"
        case .perAddress: bind = "per-address"
        case .explicit:
            let all =
                MultiHomedLab.serverAddressesA + MultiHomedLab.serverAddressesB
                + [linkLocals.serverA, linkLocals.serverB]
            bind = "[" + all.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        }
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), tcp: \(port), bind: \(bind)}\n",
            environment: policy == .fallback ? ["UDPD_TESTING_WITHOUT_PKTINFO": "1"] : [:],
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        if policy == .perAddress || policy == .fallback {
            try waitForListener(udpd, address: linkLocals.serverA, proto: "udp")
            try waitForListener(udpd, address: linkLocals.serverB, proto: "udp")
        }
        for (client, address) in linkLocals.targets(lab) {
            let result = try lab.client(client, ["udp", address, "\(port)", "1", "0", "1000"])
            let detail = "\(result.standardOutput)\(result.standardError)"
            #expect(result.status == 0, "\(policy): \(client) -> \(address): \(detail)\n\(udpd.log)")
        }
        let tcp = try lab.client(lab.clientB, ["tcp", "10.201.1.2", "\(port)"])
        #expect(tcp.status == 0, "\(policy): TCP to 10.201.1.2: \(tcp.standardOutput)\(tcp.standardError)")

        let echo = try #require(try udpd.status().services.first)
        let udp = echo.listeners.filter { $0.proto == "udp" }
        switch policy {
        case .wildcard:
            #expect(udp.allSatisfy { $0.replySource == "pktinfo" })
            #expect(echo.bindFallback == nil)
        case .perAddress, .explicit, .fallback:
            #expect(udp.allSatisfy { $0.replySource == "bound" })
            let addresses = Set(udp.map(\.address))
            for address in MultiHomedLab.serverAddressesA + [linkLocals.serverA] {
                #expect(addresses.contains(address), "\(policy): no UDP listener on \(address): \(addresses)")
            }
            #expect(echo.bindFallback == (policy == .fallback ? true : nil))
        }
        if policy == .fallback {
            #expect(echo.listeners.contains { $0.proto == "tcp" && $0.address == "0.0.0.0" })
            #expect(udpd.log.contains("serving the service per address instead"), "\(udpd.log)")
        }
    }

    @Test("an address added while UDP and TCP flows run is served within a second; removing it closes only its sockets")
    func addressesComeAndGo() throws {
        let lab = try MultiHomedLab()
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), tcp: \(port), bind: per-address, family: ipv4}\n",
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        let before = try udpd.status()

        // 40 datagrams, one every 100 ms, to 10.201.1.1; a TCP exchange every 100 ms to 10.201.2.1.
        let flow = try BackgroundCommand(
            lab.launcher(lab.clientA)
                + [BuiltProducts.path("udpd-testclient"), "udp", "10.201.1.1", "\(port)", "40", "100", "1000"]
        )
        let held = try BackgroundCommand(
            lab.launcher(lab.clientB)
                + [BuiltProducts.path("udpd-testclient"), "tcp", "10.201.2.1", "\(port)", "4"]
        )
        usleep(300_000)

        let added = ContinuousClock.now
        try lab.ip(["-n", lab.server, "addr", "add", "10.201.1.3/24", "dev", "eth1"])
        var answered = false
        while !answered && ContinuousClock.now - added < .seconds(3) {
            answered = try lab.client(lab.clientA, ["udp", "10.201.1.3", "\(port)", "1", "0", "100"]).status == 0
        }
        let latency = ContinuousClock.now - added
        #expect(answered, "10.201.1.3 never answered:\n\(udpd.log)")
        #expect(latency < .seconds(1), "10.201.1.3 answered after \(latency)")
        #expect(try udpd.status().services[0].listeners.filter { $0.address == "10.201.1.3" }.count == 2)

        let removed = ContinuousClock.now
        try lab.ip(["-n", lab.server, "addr", "del", "10.201.1.3/24", "dev", "eth1"])
        try waitForListener(udpd, address: "10.201.1.3", proto: "udp", present: false, timeout: .seconds(1))
        #expect(ContinuousClock.now - removed < .seconds(1))
        let sockets = try runCommand("/usr/sbin/ip", ["netns", "exec", lab.server, "ss", "-Hanu", "src", "10.201.1.3"])
        #expect(sockets.standardOutput.isEmpty, "a socket on 10.201.1.3 is still open: \(sockets.standardOutput)")

        let flowResult = flow.wait()
        let heldResult = held.wait()
        #expect(
            flowResult.status == 0 && flowResult.standardOutput.contains("received=40"),
            "the UDP flow lost datagrams: \(flowResult.standardOutput)\(flowResult.standardError)"
        )
        #expect(
            heldResult.status == 0,
            "the TCP connection broke: \(heldResult.standardOutput)\(heldResult.standardError)"
        )
        let after = try udpd.status()
        #expect(after.generation == before.generation, "an address change is not a reload")
        let identity = { (listener: ListenerStatus) in "\(listener.proto) \(listener.endpoint) \(listener.replySource)"
        }
        #expect(after.services[0].listeners.map(identity) == before.services[0].listeners.map(identity))
        #expect(after.services[0].counters.tcpAccepted == 1)
    }

    @Test("freebind: udpd starts on an absent address and serves it once the address is added")
    func freebindServesALateAddress() throws {
        let lab = try MultiHomedLab()
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), bind: [10.201.1.9], freebind: true}\n",
            launcher: lab.launcher(lab.server)
        )
        let status = try udpd.waitUntilReady()
        #expect(status.services[0].listeners.map(\.address) == ["10.201.1.9"])
        let early = try lab.client(lab.clientA, ["udp", "10.201.1.9", "\(port)", "1", "0", "200"])
        #expect(early.status != 0, "an absent address answered")
        try lab.ip(["-n", lab.server, "addr", "add", "10.201.1.9/24", "dev", "eth1"])
        let late = try lab.client(lab.clientA, ["udp", "10.201.1.9", "\(port)", "3", "50", "1000"])
        #expect(late.status == 0, "\(late.standardOutput)\(late.standardError)\n\(udpd.log)")
    }

    @Test("an IPv6 address added in duplicate address detection is bound once usable, and answers from itself")
    func tentativeAddressIsBoundOnceUsable() throws {
        let lab = try MultiHomedLab()
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), bind: per-address, family: ipv6}\n",
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        // Without nodad the address is tentative for about a second: its bind fails with EADDRNOTAVAIL until then.
        try lab.ip(["-n", lab.server, "addr", "add", "fd00:201:1::3/64", "dev", "eth1"])
        try waitForListener(udpd, address: "fd00:201:1::3", proto: "udp", timeout: .seconds(8))
        let answer = try lab.client(lab.clientA, ["udp", "fd00:201:1::3", "\(port)", "3", "50", "1000"])
        #expect(answer.status == 0, "\(answer.standardOutput)\(answer.standardError)\n\(udpd.log)")
    }

    @Test("interfaces: per-address binds only that interface's addresses; wildcard binds the device")
    func interfacesLimitBinding() throws {
        let lab = try MultiHomedLab()
        let port = try probeFreePort()
        let wildcardPort = try probeFreePort()
        let linkLocals = try LinkLocals(lab)
        let udpd = try UDPDProcess(
            config: """
                services:
                  only-b: {handler: echo, udp: \(port), bind: per-address, interfaces: [eth2]}
                  wild-a: {handler: echo, udp: \(wildcardPort), interfaces: [eth1]}
                """,
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        try waitForListener(udpd, address: linkLocals.serverB, proto: "udp")
        let services = try udpd.status().services
        #expect(Set(services[0].listeners.map(\.address)) == Set(MultiHomedLab.serverAddressesB + [linkLocals.serverB]))
        #expect(services[1].listeners.allSatisfy { $0.interface == "eth1" && $0.replySource == "pktinfo" })
        #expect(services[1].listeners.count == 2)
        // 10.201.2.1 reached through eth1 (from A) is served; through eth2 (from B) it is not.
        #expect(try lab.client(lab.clientA, ["udp", "10.201.2.1", "\(wildcardPort)", "1", "0", "1000"]).status == 0)
        #expect(try lab.client(lab.clientB, ["udp", "10.201.2.1", "\(wildcardPort)", "1", "0", "300"]).status != 0)
        #expect(try lab.client(lab.clientB, ["udp", "10.201.2.1", "\(port)", "1", "0", "1000"]).status == 0)
        #expect(try lab.client(lab.clientA, ["udp", "10.201.1.1", "\(port)", "1", "0", "300"]).status != 0)
    }
}

/// The link-local addresses of the lab's links, once usable, and the list of (client, server address) pairs.
struct LinkLocals {
    /// The server's eth1 link-local address as the server writes it (`fe80::...%eth1`).
    let serverA: String
    /// The server's eth2 link-local address as the server writes it.
    let serverB: String
    /// The same addresses as each client writes them (`%eth0`).
    let serverAFromClient: String
    let serverBFromClient: String

    init(_ lab: MultiHomedLab) throws {
        serverA = try lab.linkLocal(lab.server, "eth1", scope: "eth1")
        serverB = try lab.linkLocal(lab.server, "eth2", scope: "eth2")
        serverAFromClient = serverA.replacingOccurrences(of: "%eth1", with: "%eth0")
        serverBFromClient = serverB.replacingOccurrences(of: "%eth2", with: "%eth0")
        _ = try lab.linkLocal(lab.clientA, "eth0", scope: "eth0")
        _ = try lab.linkLocal(lab.clientB, "eth0", scope: "eth0")
    }

    /// Every server address from every client: all global ones (through the server's other link too), and the
    /// link-local address of the link the client is on.
    func targets(_ lab: MultiHomedLab) -> [(String, String)] {
        let global = MultiHomedLab.serverAddressesA + MultiHomedLab.serverAddressesB
        return global.map { (lab.clientA, $0) } + [(lab.clientA, serverAFromClient)]
            + global.map { (lab.clientB, $0) } + [(lab.clientB, serverBFromClient)]
    }
}

/// Waits until udpd's status lists (or, with `present: false`, no longer lists) a listener on `address`.
func waitForListener(
    _ udpd: UDPDProcess,
    address: String,
    proto: String,
    present: Bool = true,
    timeout: Duration = .seconds(10)
) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let listed = try udpd.status().services.contains { service in
            service.listeners.contains { $0.address == address && $0.proto == proto }
        }
        if listed == present { return }
        usleep(20_000)
    }
    throw TestFailure(
        "\(proto) listener on \(address) still \(present ? "absent" : "present") after \(timeout):\n\(udpd.log)"
    )
}
