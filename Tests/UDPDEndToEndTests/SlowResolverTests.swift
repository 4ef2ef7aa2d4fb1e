import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// udpd in its own network and mount namespaces, where /etc/resolv.conf names a DNS server (a small Python
/// script on 127.0.0.1:53 of that namespace) that answers every query after 2 seconds, so that resolving a forward
/// service's upstream host name takes 2 seconds. The n-th address query is answered with the n-th of `addresses`
/// (the last one from then on), so that a test can move the name. The upstreams live in the same script, outside
/// udpd (a forward never relays into udpd's own listeners): on `upstreamPort`, the first address echoes every
/// datagram and the others count what they receive into the file ``sinkCountPath`` without answering.
final class SlowResolverLab {
    static let delay = 2.0
    static let name = "slow-upstream.udpd.test"
    let directory: TemporaryDirectory
    let launcher: [String]
    let environment: [String: String]

    /// The file in which the non-echoing upstreams count the datagrams they received.
    var sinkCountPath: String { directory.path + "/dns.py.sink" }

    init(addresses: [String] = ["127.0.0.1"], upstreamPort: UInt16? = nil) throws {
        let answers = "[" + addresses.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        directory = try TemporaryDirectory()
        let resolv = try directory.write("resolv.conf", "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
        let server = try directory.write(
            "dns.py",
            """
            import os, socket, struct, threading, time
            parent = os.getppid()
            answers = \(answers)
            asked = [0]
            lock = threading.Lock()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 53))
            sock.settimeout(0.2)
            def upstream(address, echoes):
                served = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                served.bind((address, \(upstreamPort ?? 0)))
                received = 0
                while True:
                    data, client = served.recvfrom(2048)
                    if echoes:
                        served.sendto(data, client)
                    else:
                        received += 1
                        with open(__file__ + ".sink", "w") as count:
                            count.write(str(received))
            for index, address in enumerate(dict.fromkeys(answers) if \(upstreamPort == nil ? "False" : "True") else []):
                threading.Thread(target=upstream, args=(address, index == 0), daemon=True).start()
            open(__file__ + ".ready", "w").close()
            def answer(query, client):
                time.sleep(\(Self.delay))
                ident, flags, qdcount = struct.unpack("!HHH", query[:6])
                end = 12
                while query[end] != 0:
                    end += query[end] + 1
                question = query[12:end + 5]
                qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
                records = b""
                count = 0
                if qtype == 1:
                    with lock:
                        address = answers[min(asked[0], len(answers) - 1)]
                        asked[0] += 1
                    records = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
                    count = 1
                header = struct.pack("!HHHHHH", ident, 0x8180, 1, count, 0, 0)
                sock.sendto(header + question + records, client)
            deadline = time.time() + 120
            while time.time() < deadline and os.getppid() == parent:
                try:
                    query, client = sock.recvfrom(512)
                except socket.timeout:
                    continue
                threading.Thread(target=answer, args=(query, client), daemon=True).start()
            """
        )
        let script = try directory.write(
            "enter.sh",
            """
            set -e
            ip link set lo up
            mount --bind "$UDPD_TEST_RESOLV" /etc/resolv.conf
            python3 "$UDPD_TEST_DNS" &
            tries=0
            while [ ! -e "$UDPD_TEST_DNS.ready" ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
            exec "$@"

            """
        )
        launcher = ["/usr/bin/unshare", "--mount", "--net", "--", "/bin/sh", script]
        environment = ["UDPD_TEST_RESOLV": resolv, "UDPD_TEST_DNS": server]
    }

    /// Runs `udpd-testclient ARGS...` in the network namespace of process `pid`.
    func client(in pid: Int32, _ arguments: [String]) throws -> CommandResult {
        try runCommand(
            "/usr/bin/nsenter",
            ["-t", "\(pid)", "-n", BuiltProducts.path("udpd-testclient")] + arguments,
            timeout: 15
        )
    }
}

@Suite(
    "a slow host name stalls nothing that must answer",
    .serialized,
    .enabled(if: isRoot, "skipped: mount and network namespaces need root")
)
struct SlowResolverTests {
    @Test("status answers at once while a reload waits 2 s for an upstream host name; the reload then applies it")
    func statusAnswersWhileAReloadResolves() throws {
        let echoPort = try probeFreePort()
        let relayPort = try probeFreePort()
        let lab = try SlowResolverLab(upstreamPort: echoPort)
        let echo = "  sink: {handler: discard, udp: \(relayPort), bind: [\"127.0.0.2\"]}\n"
        let udpd = try UDPDProcess(
            config: "services:\n" + echo,
            environment: lab.environment,
            launcher: lab.launcher
        )
        try udpd.waitUntilReady()
        try udpd.rewriteConfig(
            "services:\n" + echo
                + "  relay: {handler: forward, udp: \(relayPort), bind: [\"127.0.0.1\"], "
                + "upstream: \"\(SlowResolverLab.name):\(echoPort)\"}\n"
        )
        let started = ContinuousClock.now
        let reload = try BackgroundCommand([BuiltProducts.path("udpctl"), "-s", udpd.socketPath, "reload"])
        #expect(
            eventually(timeout: .seconds(5)) { udpd.log.contains("reload requested over the control socket") },
            "\(udpd.log)"
        )
        var slowest = Duration.zero
        for _ in 0..<5 {
            let asked = ContinuousClock.now
            let status = try udpd.udpctl(["status", "--json"])
            #expect(status.status == 0, "\(status.standardError)")
            slowest = max(slowest, ContinuousClock.now - asked)
            usleep(100_000)
        }
        #expect(slowest < .milliseconds(700), "status took \(slowest) while a reload resolved a host name")

        let result = reload.wait(timeout: .seconds(20))
        let took = ContinuousClock.now - started
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)\n\(udpd.log)")
        #expect(took >= .seconds(1.5), "the name resolved in \(took): the slow DNS server was not used")
        let relayed = try lab.client(in: udpd.pid, ["udp", "127.0.0.1", "\(relayPort)", "3", "0", "2000"])
        #expect(relayed.status == 0, "\(relayed.standardOutput)\(relayed.standardError)\n\(udpd.log)")
    }

    @Test("a reload resolves the name again: the unchanged service follows its new address")
    func reloadFollowsANameThatMoved() throws {
        let port = try probeFreePort()
        let relayPort = try probeFreePort()
        let lab = try SlowResolverLab(addresses: ["127.0.0.1", "127.0.0.2"], upstreamPort: port)
        let services = """
            services:
              other: {handler: discard, udp: \(relayPort), bind: ["127.0.0.2"]}

            """
        let udpd = try UDPDProcess(config: services, environment: lab.environment, launcher: lab.launcher)
        try udpd.waitUntilReady()
        try udpd.rewriteConfig(
            services
                + "  relay: {handler: forward, udp: \(relayPort), bind: [\"127.0.0.1\"], "
                + "upstream: \"\(SlowResolverLab.name):\(port)\"}\n"
        )
        let first = try udpd.udpctl(["reload"])
        #expect(first.status == 0, "\(first.standardOutput)\(first.standardError)")
        let echoed = try lab.client(in: udpd.pid, ["udp", "127.0.0.1", "\(relayPort)", "1", "0", "2000"])
        #expect(echoed.status == 0, "the name's first address (echo) did not answer: \(echoed.standardOutput)")

        // The file is the same; the name now resolves to 127.0.0.2, where discard answers nothing.
        let second = try udpd.udpctl(["reload"])
        #expect(second.status == 0, "\(second.standardOutput)\(second.standardError)")
        #expect(second.standardOutput.contains("changed service relay"), "\(second.standardOutput)")
        let discarded = try lab.client(in: udpd.pid, ["udp", "127.0.0.1", "\(relayPort)", "1", "0", "1000"])
        #expect(discarded.status != 0, "the relay still forwards to the name's old address")
        let sinkCount = try? String(contentsOfFile: lab.sinkCountPath, encoding: .utf8)
        #expect(Int(sinkCount ?? "") ?? 0 >= 1, "the name's new address (a counting upstream) received nothing")
    }
}
