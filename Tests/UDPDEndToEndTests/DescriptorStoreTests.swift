import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A stand-in for systemd's descriptor store, in Python: it binds a notify socket (with SO_PASSCRED, to see who
/// sends), starts udpd with NOTIFY_SOCKET and FDSTORE=64, keeps every descriptor udpd sends with FDSTORE=1 under its
/// FDNAME= (a second descriptor of a socket it holds is dropped, as systemd does), closes them on FDSTOREREMOVE=1,
/// and on "restart" (a line on its standard input) does what `systemctl restart` does: SIGTERM, wait, start udpd
/// again with the stored descriptors at 3, 4, ... (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). Each event is a line
/// appended to the events file.
private func storeStandIn(in directory: TemporaryDirectory) throws -> String {
    try directory.write(
        "store.py",
        """
        import array, os, select, signal, socket, sys
        notify_path, events_path = sys.argv[1], sys.argv[2]
        command = sys.argv[3:]
        events = open(events_path, "a", buffering=1)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        store = []
        def same(a, b):
            x, y = os.fstat(a), os.fstat(b)
            return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)
        def start():
            pid = os.fork()
            if pid == 0:
                fds = [fd for _, fd in store]
                high = [os.dup2(fd, 500 + i) for i, fd in enumerate(fds)]
                for i in range(len(high)):
                    os.dup2(500 + i, 3 + i)
                os.closerange(3 + len(high), 1024)
                os.environ["LISTEN_PID"] = str(os.getpid())
                os.environ["LISTEN_FDS"] = str(len(fds))
                os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _ in store)
                os.environ["NOTIFY_SOCKET"] = notify_path
                os.environ["FDSTORE"] = "64"
                os.execv(command[0], command)
            events.write("started %d with %d\\n" % (pid, len(store)))
            return pid
        pid = start()
        while True:
            ready, _, _ = select.select([notify, sys.stdin], [], [], 60)
            if not ready:
                break
            if sys.stdin in ready:
                line = sys.stdin.readline().strip()
                if line in ("restart", "stop", ""):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
                    events.write("stopped %d\\n" % pid)
                if line == "restart":
                    pid = start()
                    continue
                if line in ("stop", ""):
                    break
            if notify in ready:
                fds = array.array("i")
                message, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(253 * 4) + socket.CMSG_SPACE(12))
                sender = 0
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        sender = array.array("i", data[:4])[0]
                fields = dict(l.split("=", 1) for l in message.decode().split("\\n") if "=" in l)
                if fields.get("FDSTORE") == "1":
                    name = fields.get("FDNAME", "stored")
                    for fd in fds:
                        if any(same(fd, kept) for _, kept in store):
                            os.close(fd)
                        else:
                            store.append((name, fd))
                    events.write("store %s %d\\n" % (name, len(fds)))
                elif fields.get("FDSTOREREMOVE") == "1":
                    name = fields.get("FDNAME", "")
                    for _, fd in [e for e in store if e[0] == name]:
                        os.close(fd)
                    store = [e for e in store if e[0] != name]
                    events.write("remove %s\\n" % name)
                else:
                    for fd in fds:
                        os.close(fd)
                if fields.get("READY") == "1":
                    events.write("ready %d from %d\\n" % (pid, sender))
                if "MAINPID" in fields:
                    events.write("mainpid %s from %d\\n" % (fields["MAINPID"], sender))
        """
    )
}

@Suite("systemd's descriptor store: a restart closes no socket", .serialized)
struct DescriptorStoreTests {
    @Test(
        "udpd stores every listening socket, a restart adopts them and loses nothing under load, a gone listener leaves",
        .enabled(if: python3Path != nil, "python3 stands in for systemd")
    )
    func restartThroughTheStore() throws {
        let ports = try freePorts(2)
        let (perAddress, wildcard) = (ports[0], ports[1])
        let ipv6 = hasIPv6Loopback
        let directory = try TemporaryDirectory()
        let configPath = try directory.write(
            "services.yaml",
            """
            services:
              per-address:
                handler: echo
                udp: \(perAddress)
                tcp: \(perAddress)
                bind: [127.0.0.1]
                workers: 2
              wildcard:
                handler: echo
                udp: \(wildcard)
                family: \(ipv6 ? "dual" : "ipv4")
            """
        )
        let eventsPath = directory.file("events")
        _ = FileManager.default.createFile(atPath: eventsPath, contents: nil)
        let logPath = directory.file("udpd.log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let helper = Process()
        helper.executableURL = URL(fileURLWithPath: python3Path!)
        helper.arguments = [
            try storeStandIn(in: directory), directory.file("notify.sock"), eventsPath,
            BuiltProducts.path("udpd"), "-c", configPath, "--control-socket", directory.file("control.sock"),
        ]
        let commands = Pipe()
        helper.standardInput = commands
        helper.standardOutput = FileHandle(forWritingAtPath: logPath)
        helper.standardError = FileHandle(forWritingAtPath: logPath)
        try helper.run()
        func events() -> [String] {
            ((try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        func daemons() -> [Int32] {
            events().compactMap { event in
                event.hasPrefix("started ") || event.hasPrefix("mainpid ") ? Int32(event.split(separator: " ")[1]) : nil
            }
        }
        defer {
            try? commands.fileHandleForWriting.write(contentsOf: Data("stop\n".utf8))
            let deadline = ContinuousClock.now + .seconds(15)
            while helper.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
            for pid in daemons() where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
            if helper.isRunning { helper.terminate() }
        }
        func readyCount() -> Int { events().filter { $0.hasPrefix("ready ") }.count }
        #expect(eventually(timeout: .seconds(20)) { readyCount() == 1 }, "\(events()) \(log())")

        var names = ["udp-127.0.0.1-\(perAddress)", "tcp-127.0.0.1-\(perAddress)", "udp-0.0.0.0-\(wildcard)"]
        if ipv6 { names.append("udp-__-\(wildcard)") }
        for name in names {
            #expect(events().contains { $0.hasPrefix("store \(name) ") }, "\(name) stored: \(events())")
        }
        #expect(events().contains("store udp-127.0.0.1-\(perAddress) 2"), "both workers of the port are stored")

        do {
            // A connection still open would hold the stop for its grace period (systemd waits for udpd to exit).
            let stream = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: perAddress)!)
            try stream.send("before\n")
            #expect(stream.receive(count: 7) == Array("before\n".utf8))
        }
        var loops = [
            try RequestLoop("v4-address", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: perAddress)!),
            try RequestLoop("v4-wildcard", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: wildcard)!),
        ]
        if ipv6 {
            loops.append(try RequestLoop("v6-wildcard", from: "::1", to: IPEndpoint(address: "::1", port: wildcard)!))
        }
        defer { loops.forEach { $0.stop() } }
        usleep(300_000)
        for restart in 1...3 {
            let start = ContinuousClock.now
            try commands.fileHandleForWriting.write(contentsOf: Data("restart\n".utf8))
            #expect(
                eventually(timeout: .seconds(20)) { readyCount() == restart + 1 },
                "restart \(restart): \(events()) \(log())"
            )
            print("store-backed restart \(restart): \(start.duration(to: .now)) until READY=1")
            usleep(300_000)
        }
        loops.forEach { $0.stop() }
        for loop in loops {
            #expect(loop.answered > 20, "\(loop.label) answered \(loop.answered)")
            #expect(loop.lost == 0, "\(loop.label): \(loop.lost) lost, first \(loop.firstLoss ?? "-"): \(events())")
            print("\(loop.label) across restarts: \(loop.answered) replies, longest pause \(loop.longestPause)")
        }
        #expect(log().contains("adopted an inherited socket"), "\(log())")
        #expect(!log().contains("matches no listener"), "\(log())")
        // New connections reach the restarted udpd on the same listening socket.
        let again = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: perAddress)!)
        try again.send("after\n")
        #expect(again.receive(count: 6) == Array("after\n".utf8))

        // A reload that drops a listener removes it from the store.
        try """
        services:
          per-address:
            handler: echo
            udp: \(perAddress)
            tcp: \(perAddress)
            bind: [127.0.0.1]
            workers: 2
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        if let current = daemons().last { kill(current, SIGHUP) }
        #expect(
            eventually(timeout: .seconds(10)) { events().contains("remove udp-0.0.0.0-\(wildcard)") },
            "\(events())"
        )
        #expect(!events().contains("remove udp-127.0.0.1-\(perAddress)"), "a kept listener stays stored")

        // udpctl upgrade under systemd: the new udpd, not the main process, says MAINPID= (NotifyAccess=all).
        let upgrade = try runCommand(BuiltProducts.path("udpctl"), ["-s", directory.file("control.sock"), "upgrade"])
        #expect(upgrade.status == 0, "\(upgrade.standardError) \(log())")
        let newPID = upgrade.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(events().contains("mainpid \(newPID) from \(newPID)"), "\(events())")
    }
}
