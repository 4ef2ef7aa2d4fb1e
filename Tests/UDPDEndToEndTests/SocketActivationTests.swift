import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// The python3 that stands in for systemd's socket-activation launcher, if there is one.
let python3Path: String? = ["/usr/bin/python3", "/usr/local/bin/python3"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }

/// The end of every launcher that stands in for systemd's socket activation, as Python lines: the descriptors in
/// `fds` move to 3, 4, ... (inheritable), LISTEN_PID (the launcher's own pid, which udpd keeps across exec),
/// LISTEN_FDS and LISTEN_FDNAMES (the Python expression `names`) announce them, and the program on the launcher's
/// command line is exec'ed in the same process.
func activationHandOver(names: String) -> String {
    """
    high = [os.dup2(fd, 200 + i) for i, fd in enumerate(fds)]
    for fd in fds:
        os.close(fd)
    for i in range(len(high)):
        os.dup2(200 + i, 3 + i)
        os.close(200 + i)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(high))
    os.environ["LISTEN_FDNAMES"] = \(names)
    os.execv(sys.argv[1], sys.argv[1:])
    """
}

/// A launcher doing what systemd does for socket activation: it opens the sockets `specs` describe, places them at
/// descriptors 3, 4, ... (inheritable), sets LISTEN_PID to its own pid (which udpd keeps across exec), LISTEN_FDS
/// and LISTEN_FDNAMES, and execs the program given on its command line.
func activationLauncher(
    _ specs: [(proto: String, address: String, port: UInt16, name: String, reusePort: Bool)],
    in directory: TemporaryDirectory
) throws -> [String] {
    guard let python3Path else { throw TestFailure("python3 is not installed") }
    let sockets = specs.map { spec in
        "(\"\(spec.proto)\", \"\(spec.address)\", \(spec.port), \(spec.reusePort ? "True" : "False"))"
    }.joined(separator: ", ")
    let script = """
        import os, socket, sys
        fds = []
        for proto, address, port, reuse in [\(sockets)]:
            kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
            s = socket.socket(socket.AF_INET, kind)
            if reuse:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((address, port))
            if proto == "tcp":
                s.listen(16)
            fds.append(os.dup(s.fileno()))
            s.close()
        \(activationHandOver(names: "\"\(specs.map(\.name).joined(separator: ":"))\""))
        """
    return [python3Path, try directory.write("activate.py", script)]
}

@Suite("systemd socket activation: inherited sockets are adopted, not bound again", .serialized)
struct SocketActivationTests {
    @Test(
        "udpd adopts inherited UDP (answering from the address asked) and TCP sockets, closes one matching nothing",
        .enabled(if: python3Path != nil, "python3 is needed to hand sockets over as systemd does")
    )
    func adoptsInheritedSockets() throws {
        let (udp, tcp, stray) = (try probeFreePort(), try probeFreePort(), try probeFreePort())
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try activationLauncher(
            [
                ("udp", "0.0.0.0", udp, "udpd-udp.socket", false),
                ("tcp", "127.0.0.1", tcp, "udpd-tcp.socket", false),
                ("udp", "127.0.0.1", stray, "stray", false),
            ],
            in: launcherDirectory
        )
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(udp)
                    family: ipv4
                    workers: 2
                  tcp-echo:
                    handler: echo
                    tcp: \(tcp)
                    bind: [127.0.0.1]
                """,
            launcher: launcher
        )
        // Had udpd bound these ports itself, the inherited sockets (no SO_REUSEPORT) would have made it fail.
        let status = try udpd.waitUntilReady()
        let listener = status.services.first { $0.name == "echo" }?.listeners.first
        #expect(listener?.address == "0.0.0.0" && listener?.port == Int(udp))
        #expect(listener?.replySource == "pktinfo", "pktinfo was enabled on the adopted socket")

        // A connected client only accepts a reply from the address it sent to.
        for address in hasSecondLoopbackAddress ? ["127.0.0.1", "127.0.0.2"] : ["127.0.0.1"] {
            let client = try ConnectedUDPClient(from: address, to: IPEndpoint(address: address, port: udp)!)
            try client.send("via \(address)")
            #expect(client.receiveText() == "via \(address)", "reply from \(address)")
        }
        do {
            let stream = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: tcp)!)
            try stream.send("over tcp\n")
            #expect(stream.receive(count: 9) == Array("over tcp\n".utf8))
        }

        let log = udpd.log
        #expect(log.components(separatedBy: "adopted an inherited socket").count - 1 == 2, "\(log)")
        #expect(log.contains("matches no listener") && log.contains("stray"), "\(log)")
        #expect(log.contains("one worker serves it"), "no SO_REUSEPORT on the inherited socket: \(log)")
        #expect(isPortFree("127.0.0.1", stray, proto: "udp"), "the unmatched socket was closed")

        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0)
        #expect(isPortFree("0.0.0.0", udp, proto: "udp"), "the adopted socket closed with udpd")
    }

    @Test(
        "an inherited UDP socket with SO_REUSEPORT is joined by the configured number of workers",
        .enabled(if: python3Path != nil, "python3 is needed to hand sockets over as systemd does")
    )
    func reusePortSocketGetsWorkers() throws {
        let udp = try probeFreePort()
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try activationLauncher([("udp", "127.0.0.1", udp, "udpd.socket", true)], in: launcherDirectory)
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo: {handler: echo, udp: \(udp), bind: [127.0.0.1], workers: 3}
                """,
            launcher: launcher
        )
        try udpd.waitUntilReady()
        for index in 0..<20 {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: udp)!)
            try client.send("n\(index)")
            #expect(client.receiveText() == "n\(index)")
        }
        #expect(udpd.log.contains("adopted an inherited socket") && udpd.log.contains("workers=3"), "\(udpd.log)")
        #expect(!udpd.log.contains("one worker serves it"))
    }

    @Test("LISTEN_FDS is taken only when LISTEN_PID names this process; names are used when they fit")
    func environmentParsing() throws {
        let own = SocketActivation.announcedDescriptors(
            in: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a.socket:b.socket"],
            pid: 42
        )
        #expect(try own.get().map(\.descriptor) == [3, 4])
        #expect(try own.get().map(\.name) == ["a.socket", "b.socket"])
        let unnamed = SocketActivation.announcedDescriptors(
            in: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "only-one"],
            pid: 42
        )
        #expect(try unnamed.get().map(\.name) == [nil, nil])
        let other = SocketActivation.announcedDescriptors(in: ["LISTEN_PID": "41", "LISTEN_FDS": "1"], pid: 42)
        #expect(throws: SocketActivation.Refusal.otherProcess("41")) { try other.get() }
        let bad = SocketActivation.announcedDescriptors(in: ["LISTEN_PID": "42", "LISTEN_FDS": "x"], pid: 42)
        #expect(throws: SocketActivation.Refusal.badCount("x")) { try bad.get() }
        #expect(try SocketActivation.announcedDescriptors(in: [:], pid: 42).get().isEmpty)
    }
}
