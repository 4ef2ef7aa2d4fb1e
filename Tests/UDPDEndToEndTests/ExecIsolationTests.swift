import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A shell program that reports who it is: uid, gid, its capability sets and no_new_privs; the pid of its
/// grandparent (its parent is its guard, whose parent is the program spawner, whose parent is udpd) and of udpd,
/// whether it may signal either; its guard's effective capabilities, and the spawner's uids and capability sets.
private let identityReport = """
    gp=$(awk '/^PPid:/ {print $2}' /proc/$PPID/status); \
    daemon=$(awk '/^PPid:/ {print $2}' /proc/$gp/status); \
    echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; \
    awk '/^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):/ {print $1 $2}' /proc/$$/status; \
    echo "grandparent=$gp daemon=$daemon"; \
    awk '/^Name:/ {print "spawnerName=" $2}' /proc/$gp/status; \
    awk '/^Uid:/ {print "spawnerUid=" $2 "," $3 "," $4}' /proc/$gp/status; \
    awk '/^(CapPrm|CapEff|CapBnd|CapAmb):/ {print "spawner" $1 $2}' /proc/$gp/status; \
    awk '/^CapEff:/ {print "guard" $1 $2}' /proc/$PPID/status; \
    if kill -0 "$gp" 2>/dev/null; then echo "signal=allowed"; else echo "signal=denied"; fi; \
    if kill -0 "$daemon" 2>/dev/null; then echo "signalDaemon=allowed"; else echo "signalDaemon=denied"; fi
    """

/// The spawner of udpd `pid`: its child named udpd-spawner.
private func spawner(of pid: Int32) -> Int32? {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    let children = tasks.flatMap { task in
        ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
            .split(separator: " ").compactMap { Int32($0) }
    }
    return children.first { child in
        (try? procStatusField("/proc/\(child)/status", "Name")) == ["udpd-spawner"]
    }
}

/// CAP_KILL, CAP_SETGID, CAP_SETUID and CAP_SETPCAP: the spawner's capabilities when udpd started as root.
private let spawnCapabilities = "00000000000001e0"

/// The `Key:value` lines of `report` as a dictionary.
private func fields(_ report: String) -> [String: String] {
    var result: [String: String] = [:]
    for line in report.split(separator: "\n") {
        for word in line.split(separator: " ") {
            if let equals = word.firstIndex(of: "=") {
                result[String(word[..<equals])] = String(word[word.index(after: equals)...])
            } else if let colon = word.firstIndex(of: ":") {
                result[String(word[..<colon])] = String(word[word.index(after: colon)...])
            }
        }
    }
    return result
}

/// The pids of live processes whose command line contains `marker`.
private func processes(containing marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> Int32? in
        guard let pid = Int32(entry), pid != getpid(),
            let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !data.isEmpty
        else { return nil }
        let state = (try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8))?
            .split(separator: ")").last?.split(separator: " ").first
        guard state != "Z" else { return nil }
        let text = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return text.contains(marker) ? pid : nil
    }
}

/// Kills whatever a failed test left behind.
private func killAll(containing marker: String) {
    for pid in processes(containing: marker) { kill(pid, SIGKILL) }
}

/// A `sleep` duration unique to this run, used as the marker of a program's leftovers in /proc/*/cmdline.
private func uniqueSleep() -> String {
    "300.\(UInt32.random(in: 100_000...999_999))"
}

@Suite("exec isolation: own user, no capabilities, nothing outlives a program", .serialized)
struct ExecIsolationTests {
    @Test(
        "root-started udpd with user: daemon runs a user: nobody program without capabilities, unable to signal udpd",
        .enabled(if: isRoot, "starting programs as another user needs root")
    )
    func programRunsAsItsOwnUser() throws {
        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                user: daemon
                services:
                  who:
                    handler: exec
                    udp: \(ports[0])
                    command: [/bin/sh, -c, '\(identityReport.replacingOccurrences(of: "'", with: "''"))']
                    user: nobody
                """
        )
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[0])!,
            timeoutMilliseconds: 5000
        )
        try client.send("who")
        let report = try #require(client.receiveText(), "no reply\n\(udpd.log)")
        let values = fields(report)
        let nobody = ProcessIdentity.unprivileged
        #expect(values["uid"] == "\(nobody.uid)", "\(report)")
        #expect(values["gid"] == "\(nobody.gid)", "\(report)")
        #expect(values["groups"] == "\(nobody.gid)", "\(report)")
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(values[set] == "0000000000000000", "\(set) in \(report)")
        }
        #expect(values["NoNewPrivs"] == "1", "\(report)")
        #expect(values["daemon"] == "\(udpd.pid)", "\(report)")
        #expect(values["grandparent"] == spawner(of: udpd.pid).map { "\($0)" }, "\(report)")
        #expect(values["signal"] == "denied" && values["signalDaemon"] == "denied", "\(report)")
        // Its guard (its parent) keeps CAP_KILL alone.
        #expect(values["guardCapEff"] == "0000000000000020", "\(report)")
        // The spawner, forked before udpd dropped to daemon, is root with the four capabilities that start a
        // program as its own user and kill its tree, and nothing else, in any set.
        #expect(values["spawnerName"] == "udpd-spawner", "\(report)")
        #expect(values["spawnerUid"] == "0,0,0", "\(report)")
        for set in ["CapPrm", "CapEff", "CapBnd"] {
            #expect(values["spawner" + set] == spawnCapabilities, "spawner \(set) in \(report)")
        }
        #expect(values["spawnerCapAmb"] == "0000000000000000", "\(report)")
        // udpd itself keeps none of them: its binder thread has CAP_NET_BIND_SERVICE alone, the others nothing.
        for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(udpd.pid)/task") {
            let path = "/proc/\(udpd.pid)/task/\(task)/status"
            guard let name = try? procStatusField(path, "Name").first,
                let permitted = try? procStatusField(path, "CapPrm").first
            else { continue }
            #expect(
                permitted == (name == "udpd-binder" ? "0000000000000400" : "0000000000000000"),
                "udpd's thread \(name) keeps \(permitted)"
            )
        }
        let daemonUid = try #require(getpwnam("daemon")).pointee.pw_uid
        #expect(try procStatusField("/proc/\(udpd.pid)/status", "Uid").first == "\(daemonUid)", "udpd runs as daemon")
    }

    @Test(
        "udpd started unprivileged with ambient CAP_NET_BIND_SERVICE serves a port below 1024; its programs hold none",
        .enabled(if: isRoot, "setpriv needs root")
    )
    func unprivilegedProgramsHoldNoCapability() throws {
        let port = try #require(probeFreePrivilegedPort(), "no free port in 900..<1000")
        // The launcher gives the temporary directory (configuration, control socket) to nobody, then execs udpd
        // through setpriv.
        let launcher = [
            "/bin/sh", "-c",
            "chown nobody \"$(dirname \"$3\")\" && chmod 0644 \"$3\" && exec setpriv --reuid=nobody --regid=nogroup "
                + "--clear-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \"$@\"",
            "launcher",
        ]
        let udpd = try UDPDProcess(
            config: """
                services:
                  who:
                    handler: exec
                    udp: \(port)
                    command: [/bin/sh, -c, '\(identityReport.replacingOccurrences(of: "'", with: "''"))']
                """,
            launcher: launcher
        )
        try udpd.waitUntilReady()
        #expect(try procStatusField("/proc/\(udpd.pid)/status", "CapAmb") == ["0000000000000400"])
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: port)!,
            timeoutMilliseconds: 5000
        )
        try client.send("who")
        let report = try #require(client.receiveText(), "no reply\n\(udpd.log)")
        let values = fields(report)
        #expect(values["uid"] == "\(ProcessIdentity.unprivileged.uid)", "\(report)")
        // The bounding set cannot shrink without CAP_SETPCAP; no_new_privs makes it moot.
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            #expect(values[set] == "0000000000000000", "\(set) in \(report)")
        }
        #expect(values["NoNewPrivs"] == "1", "\(report)")
        #expect(values["guardCapEff"] == "0000000000000000", "\(report)")
        // The spawner keeps none either (CAP_NET_BIND_SERVICE is not one it needs).
        #expect(
            values["spawnerUid"] == "\(ProcessIdentity.unprivileged.uid),\(ProcessIdentity.unprivileged.uid),"
                + "\(ProcessIdentity.unprivileged.uid)",
            "\(report)"
        )
        #expect(values["spawnerCapEff"] == "0000000000000000", "\(report)")
        #expect(values["spawnerCapPrm"] == "0000000000000000", "\(report)")
    }

    @Test("a program's background and setsid children are killed at its timeout, and counted")
    func leftoversDieAtTheTimeout() throws {
        let marker = uniqueSleep()
        defer { killAll(containing: marker) }
        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                services:
                  leaver:
                    handler: exec
                    udp: \(ports[0])
                    timeout: 2s
                    max-instances: 1
                    command: [/bin/sh, -c, 'sleep \(marker) & setsid sleep \(marker) & echo hi']
                """
        )
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[0])!,
            timeoutMilliseconds: 6000
        )
        try client.send("go")
        #expect(eventually(timeout: .seconds(2)) { processes(containing: marker).count == 2 }, "\(udpd.log)")
        // Until its tree is gone the program still counts against max-instances: this one is refused.
        try client.send("again")
        #expect(try eventually(timeout: .seconds(2)) { try udpd.counters("leaver").drops["instances_exceeded"] == 1 })
        // The program itself exited at once, so its reply comes, once its leftovers released its stdout.
        #expect(client.receiveText() == "hi\n", "\(udpd.log)")
        #expect(processes(containing: marker).isEmpty, "left running: \(processes(containing: marker))")
        #expect(try eventually { try udpd.counters("leaver").drops["exec_killed"] == 2 }, "\(udpd.log)")
        #expect(try udpd.counters("leaver").drops["exec_timeout", default: 0] == 0, "\(udpd.log)")
    }

    @Test("nothing a program started outlives udpd: after SIGTERM's grace period, and at once after kill -9")
    func leftoversDieWithUDPD() throws {
        for signal in [SIGTERM, SIGKILL] {
            let marker = uniqueSleep()
            defer { killAll(containing: marker) }
            let ports = try freePorts(1)
            let udpd = try UDPDProcess(
                config: """
                    services:
                      leaver:
                        handler: exec
                        udp: \(ports[0])
                        timeout: 10m
                        command: [/bin/sh, -c, 'sleep \(marker) & setsid sleep \(marker) & echo hi']
                    """
            )
            try udpd.waitUntilReady()
            let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: server)
            try client.send("go")
            #expect(eventually(timeout: .seconds(2)) { processes(containing: marker).count == 2 }, "\(udpd.log)")
            udpd.send(signal: signal)
            #expect(udpd.waitForExit(timeout: .seconds(20)) != nil)
            let gone = eventually(timeout: .seconds(signal == SIGKILL ? 2 : 3)) {
                processes(containing: marker).isEmpty
            }
            #expect(gone, "signal \(signal) left running: \(processes(containing: marker))\n\(udpd.log)")
        }
    }

    @Test("the spawner, a subreaper, kills and counts the tree of a guard that died")
    func lostGuardsTreeIsKilled() throws {
        let marker = uniqueSleep()
        defer { killAll(containing: marker) }
        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                services:
                  leaver:
                    handler: exec
                    udp: \(ports[0])
                    timeout: 10m
                    command: [/bin/sh, -c, 'sleep \(marker) & setsid sleep \(marker) & echo hi']
                """
        )
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try client.send("go")
        #expect(eventually(timeout: .seconds(2)) { processes(containing: marker).count == 2 }, "\(udpd.log)")
        // The shell exited at once: both sleeps are the guard's now, the guard is the spawner's child, and the
        // spawner udpd's.
        let sleeper = try #require(processes(containing: marker).first)
        let guardProcess = try #require(Int32(procStatusField("/proc/\(sleeper)/status", "PPid").first ?? ""))
        let spawnerProcess = try #require(spawner(of: udpd.pid), "no udpd-spawner child of udpd")
        #expect(try procStatusField("/proc/\(guardProcess)/status", "PPid") == ["\(spawnerProcess)"])
        kill(guardProcess, SIGKILL)
        let gone = eventually(timeout: .seconds(3)) { processes(containing: marker).isEmpty }
        #expect(gone, "left running: \(processes(containing: marker))\n\(udpd.log)")
        #expect(try eventually { try udpd.counters("leaver").drops["exec_killed"] == 2 }, "\(udpd.log)")
        #expect(udpd.isRunning)
    }

    @Test(
        "an exec service a reload adds after a start without one runs its program as nobody (the spawner was there)",
        .enabled(if: isRoot, "dropping privileges needs root")
    )
    func reloadAddsExecAfterTheDrop() throws {
        let ports = try freePorts(2)
        let base = "user: daemon\nservices:\n  echo:\n    handler: echo\n    udp: \(ports[0])\n"
        let udpd = try UDPDProcess(config: base)
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.configPath, 0o644)
        try udpd.waitUntilReady()
        #expect(spawner(of: udpd.pid) != nil, "no spawner forked before the drop\n\(udpd.log)")
        try udpd.rewriteConfig(
            base + "  who:\n    handler: exec\n    udp: \(ports[1])\n    command: [/usr/bin/id, -u]\n"
        )
        chmod(udpd.configPath, 0o644)
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)\n\(udpd.log)")
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[1])!,
            timeoutMilliseconds: 5000
        )
        try client.send("who")
        #expect(client.receiveText() == "\(ProcessIdentity.unprivileged.uid)\n", "\(udpd.log)")
    }

    /// udpd with an echo and an exec service over UDP, its clients, and the pid of its spawner once a program ran.
    private func startWithSpawner(
        _ top: String
    ) throws -> (UDPDProcess, echo: ConnectedUDPClient, exec: ConnectedUDPClient, spawner: Int32) {
        let ports = try freePorts(2)
        let udpd = try UDPDProcess(
            config: """
                \(top)services:
                  echo:
                    handler: echo
                    udp: \(ports[0])
                  hi:
                    handler: exec
                    udp: \(ports[1])
                    command: [/bin/echo, hi]
                """
        )
        try udpd.waitUntilReady()
        let echo = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[0])!,
            timeoutMilliseconds: 2000
        )
        let exec = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[1])!,
            timeoutMilliseconds: 1000
        )
        try exec.send("first")
        #expect(exec.receiveText() == "hi\n", "\(udpd.log)")
        let spawnerProcess = try #require(spawner(of: udpd.pid), "no udpd-spawner child of udpd\n\(udpd.log)")
        return (udpd, echo, exec, spawnerProcess)
    }

    @Test("a killed spawner is reaped and replaced: exec answers again, echo never stops, losses are counted")
    func killedSpawnerIsReplaced() throws {
        let (udpd, echo, exec, first) = try startWithSpawner("")
        kill(first, SIGKILL)
        try echo.send("still here")
        #expect(echo.receiveText() == "still here")
        // A request that met the dead spawner fails, counted; the next one starts a new spawner (at most one a
        // second) and is answered.
        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(6)
        var sent = 0
        var answered = 0
        while answered == 0, clock.now < giveUp {
            try exec.send("again")
            sent += 1
            if exec.receiveText() == "hi\n" { answered += 1 }
        }
        #expect(answered == 1, "no answer after the spawner died\n\(udpd.log)")
        let second = spawner(of: udpd.pid)
        #expect(second != nil && second != first, "spawner \(String(describing: second)), was \(first)")
        #expect(eventually { !FileManager.default.fileExists(atPath: "/proc/\(first)") }, "the dead spawner is reaped")
        let hi = try udpd.counters("hi")
        #expect(hi.drops["handler_failed", default: 0] == UInt64(sent - answered), "\(hi)\n\(udpd.log)")
        #expect(
            udpd.log.contains("the program spawner (pid \(first)) killed by signal 9 (1 lost so far)"),
            "\(udpd.log)"
        )
        try echo.send("and now")
        #expect(echo.receiveText() == "and now")
        #expect(udpd.isRunning)
    }

    @Test(
        "after dropping to its user, udpd replaces a killed spawner without privileges: exec fails, counted",
        .enabled(if: isRoot, "dropping privileges needs root")
    )
    func killedSpawnerAfterTheDropFailsCounted() throws {
        let (udpd, echo, exec, first) = try startWithSpawner("user: daemon\n")
        kill(first, SIGKILL)
        #expect(eventually { !FileManager.default.fileExists(atPath: "/proc/\(first)") }, "the dead spawner is reaped")
        // udpd gave the capabilities that start a program as nobody to the first spawner alone: the new one, forked
        // by udpd as daemon, cannot, and each request fails, counted and logged, while echo serves on.
        for attempt in 0..<3 {
            try exec.send("attempt \(attempt)")
            #expect(exec.receiveText() == nil)
            try echo.send("echo \(attempt)")
            #expect(echo.receiveText() == "echo \(attempt)")
        }
        #expect(try eventually { try udpd.counters("hi").drops["handler_failed"] == 3 }, "\(udpd.log)")
        #expect(udpd.log.contains("cannot start the program"), "\(udpd.log)")
        #expect(udpd.isRunning)
    }

    @Test("--check refuses an exec program that would run as udpd's own top-level user, with its position")
    func checkRefusesTheDaemonsUser() throws {
        let directory = try TemporaryDirectory()
        let port = try probeFreePort()
        let same = try directory.write(
            "same.yaml",
            """
            user: daemon
            services:
              run:
                handler: exec
                udp: \(port)
                command: [/bin/true]
                user: daemon
            """
        )
        var result = try runCommand(BuiltProducts.path("udpd"), ["-c", same, "--check"])
        #expect(result.status == 1)
        #expect(
            result.standardError.contains(
                "\(same):3:3: error: service 'run' runs its program as 'daemon', the user udpd itself drops to"
            ),
            "\(result.standardError)"
        )

        let byDefault = try directory.write(
            "default.yaml",
            """
            user: nobody
            services:
              fine:
                handler: exec
                udp: \(port)
                command: [/bin/true]
                user: daemon
              run:
                handler: exec
                tcp: \(port)
                command: [/bin/true]
            """
        )
        result = try runCommand(BuiltProducts.path("udpd"), ["-c", byDefault, "--check"])
        #expect(result.status == 1)
        #expect(
            result.standardError.contains(
                "\(byDefault):8:3: error: service 'run' runs its program as 'nobody' (the default)"
            ),
            "\(result.standardError)"
        )
        #expect(!result.standardError.contains("'fine'"), "\(result.standardError)")

        // Without a top-level user, a root-started udpd runs as root: `user: root` is the explicit opt-in.
        let optIn = try directory.write(
            "root.yaml",
            "services:\n  run:\n    handler: exec\n    udp: \(port)\n    command: [/bin/true]\n    user: root\n"
        )
        result = try runCommand(BuiltProducts.path("udpd"), ["-c", optIn, "--check"])
        #expect(result.status == 0, "\(result.standardError)")
    }
}
