import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// One `Key=Value` line of a unit file, with its section and line number.
private struct UnitDirective {
    var section: String
    var key: String
    var value: String
    var line: Int
}

/// The directives of the unit file at `path`, in order (comments and blank lines left out).
private func parseUnit(_ path: String) throws -> [UnitDirective] {
    var section = ""
    var directives: [UnitDirective] = []
    let text = try String(contentsOfFile: path, encoding: .utf8)
    for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
        if line.hasPrefix("[") && line.hasSuffix("]") {
            section = String(line.dropFirst().dropLast())
            continue
        }
        guard let equals = line.firstIndex(of: "=") else {
            throw TestFailure("\(path):\(index + 1): not a directive: \(line)")
        }
        directives.append(
            UnitDirective(
                section: section,
                key: String(line[..<equals]),
                value: String(line[line.index(after: equals)...]),
                line: index + 1
            )
        )
    }
    return directives
}

/// A program found on this machine, or `nil`.
private func tool(_ name: String) -> String? {
    ["/usr/bin/\(name)", "/bin/\(name)", "/usr/sbin/\(name)", "/sbin/\(name)"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// What systemd would do for each directive, done with setpriv, unshare and mount, plus the checks that show udpd
/// works under it; directives that restrict system calls are checked on an strace log of udpd's whole tree.
private struct UnitEmulation {
    /// Shell lines run in a new mount and UTS namespace before udpd starts.
    var mounts: [String] = []
    /// setpriv's arguments.
    var setpriv: [String] = []
    /// Checks to run on the strace log once udpd has stopped: a name and a check returning a complaint or `nil`.
    var traceChecks: [(String, ([String]) -> String?)] = []
    /// What the directives found unknown to this test: each fails it.
    var unknown: [String] = []
    var execStart: [String] = []
    var type = ""
    var restart = ""
    var runtimeDirectory = ""
    var runtimeDirectoryMode = ""
    var documentation: [String] = []
    var capabilities: [String] = []
    /// FileDescriptorStoreMax=: systemd then sets FDSTORE= for udpd, which stores its listening sockets.
    var descriptorStoreMax = ""
    /// NotifyAccess=.
    var notifyAccess = ""
}

/// The system calls named in strace lines that match `call`.
private func calls(_ log: [String], _ call: String) -> [String] {
    log.filter { $0.contains(" \(call)(") || $0.hasPrefix("\(call)(") }
}

/// Kills every process whose command line mentions `marker`.
private func killProcesses(mentioning marker: String) {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for entry in entries {
        guard let pid = Int32(entry), pid != getpid(),
            let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { continue }
        let text = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        if text.contains(marker) { kill(pid, SIGKILL) }
    }
}

@Suite("the shipped systemd unit", .serialized)
struct SystemdUnitTests {
    @Test(
        "every line of examples/udpd.service holds: udpd runs under it with exec, user:, a low port, control, metrics",
        .enabled(if: isRoot, "namespaces, setpriv and binding below 1024 need root"),
        .enabled(
            if: tool("setpriv") != nil && tool("unshare") != nil && tool("strace") != nil,
            "setpriv, unshare (util-linux) and strace are needed"
        )
    )
    func everyLineIsExercised() throws {
        let unitPath = BuiltProducts.packageRoot.appendingPathComponent("examples/udpd.service").path
        let directives = try parseUnit(unitPath)
        var emulation = UnitEmulation()
        for directive in directives {
            Self.map(directive, into: &emulation)
        }
        #expect(emulation.unknown.isEmpty, "directives this test cannot exercise: \(emulation.unknown)")

        // [Unit] and [Install]: the pages it names exist, and it orders and installs where systemd expects.
        for page in emulation.documentation {
            let name = page.dropFirst("man:".count).replacingOccurrences(of: "(", with: ".")
                .replacingOccurrences(of: ")", with: "")
            let file = BuiltProducts.packageRoot.appendingPathComponent("man/\(name)").path
            #expect(FileManager.default.fileExists(atPath: file), "Documentation= names \(page), not shipped")
        }
        #expect(emulation.type == "notify-reload")
        #expect(emulation.restart == "on-failure")
        #expect(emulation.runtimeDirectory == "udpd", "the default control socket of a root udpd is /run/udpd/")
        #expect(emulation.execStart.first == "/usr/local/sbin/udpd")
        #expect(Array(emulation.execStart.dropFirst()) == ["-c", "/etc/udpd/services.yaml"])
        let expectedCapabilities = [
            "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL",
        ]
        #expect(
            emulation.capabilities.sorted() == expectedCapabilities.sorted(),
            "the bounding set is exactly what udpd and its guard use"
        )

        try Self.run(under: emulation)
    }

    /// Maps one directive to what stands in for it here; a directive it does not know is recorded as unknown.
    private static func map(_ directive: UnitDirective, into emulation: inout UnitEmulation) {
        let value = directive.value
        let yes = value == "yes" || value == "true"
        switch (directive.section, directive.key) {
        case ("Unit", "Description"):
            if value.isEmpty { emulation.unknown.append("empty Description=") }
        case ("Unit", "Documentation"):
            emulation.documentation = value.split(separator: " ").map(String.init)
        case ("Unit", "After") where value == "network.target":
            break  // udpd follows addresses as they come (bind: per-address); it needs no network-online.target
        case ("Install", "WantedBy") where value == "multi-user.target":
            break
        case ("Service", "Type"):
            emulation.type = value  // checked below: READY=1, RELOADING=1 + MONOTONIC_USEC=, STOPPING=1
        case ("Service", "ExecStart"):
            emulation.execStart = value.split(separator: " ").map(String.init)
        case ("Service", "Restart"):
            emulation.restart = value  // checked below: a clean stop exits 0, so it is not restarted
        case ("Service", "FileDescriptorStoreMax") where (Int(value) ?? 0) > 0:
            emulation.descriptorStoreMax = value  // checked below: FDSTORE=1 with FDNAME= for every listener
        case ("Service", "NotifyAccess") where value == "all":
            // For the new udpd of an upgrade, which sends MAINPID= (DescriptorStoreTests checks who sends it); under
            // this unit's user: an upgrade is refused with the reason, which is checked below.
            emulation.notifyAccess = value
        case ("Service", "CapabilityBoundingSet"):
            emulation.capabilities = value.split(separator: " ").map(String.init)
            let names = emulation.capabilities.map { "+" + $0.dropFirst("CAP_".count).lowercased() }
            emulation.setpriv.append("--bounding-set=-all," + names.joined(separator: ","))
        case ("Service", "NoNewPrivileges") where yes:
            emulation.setpriv.append("--no-new-privs")
        case ("Service", "RuntimeDirectory"):
            emulation.runtimeDirectory = value
        case ("Service", "RuntimeDirectoryMode"):
            emulation.runtimeDirectoryMode = value
        case ("Service", "ProtectSystem") where value == "strict":
            // Every mount read-only but /dev, /proc and /sys (their own directives restrict them).
            emulation.mounts.append(
                """
                mount -o remount,bind,ro /
                for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
                  case "$mp" in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$RUNTIME"|"$TRACE") ;;
                    *) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;;
                  esac
                done
                """
            )
        case ("Service", "ProtectHome") where yes:
            emulation.mounts.append(
                "for d in /home /root /run/user; do [ -d $d ] && mount -t tmpfs -o ro,mode=000 tmpfs $d; done; true"
            )
        case ("Service", "PrivateTmp") where yes:
            emulation.mounts.append(
                "mount -t tmpfs -o mode=1777 tmpfs /tmp; mount -t tmpfs -o mode=1777 tmpfs /var/tmp"
            )
        case ("Service", "PrivateDevices") where yes:
            emulation.mounts.append(
                """
                mount --rbind /dev "$T/olddev"; mount -t tmpfs -o mode=755 tmpfs /dev
                for n in null zero full random urandom tty; do touch /dev/$n; mount --bind "$T/olddev/$n" /dev/$n; done
                mkdir /dev/shm; mount -t tmpfs -o mode=1777 tmpfs /dev/shm; umount -l "$T/olddev"
                """
            )
        case ("Service", "ProtectKernelTunables") where yes:
            emulation.mounts.append(
                "mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; mount -o remount,bind,ro /sys"
            )
        case ("Service", "ProtectControlGroups") where yes:
            emulation.mounts.append("[ -d /sys/fs/cgroup ] && mount -o remount,bind,ro /sys/fs/cgroup; true")
        case ("Service", "ProtectKernelModules") where yes:
            emulation.mounts.append(
                "for d in /usr/lib/modules /lib/modules; do [ -d $d ] && mount -t tmpfs -o ro,mode=000 tmpfs $d; done;"
                    + " true"
            )
            emulation.traceChecks.append(
                (
                    "ProtectKernelModules",
                    { log in
                        let loaded =
                            calls(log, "init_module") + calls(log, "finit_module") + calls(log, "delete_module")
                        return loaded.isEmpty ? nil : "loads modules: \(loaded)"
                    }
                )
            )
        case ("Service", "ProtectKernelLogs") where yes:
            emulation.mounts.append("mount --bind /dev/null /proc/kmsg")
            emulation.traceChecks.append(
                (
                    "ProtectKernelLogs",
                    { log in
                        calls(log, "syslog").isEmpty ? nil : "reads the kernel log: \(calls(log, "syslog"))"
                    }
                )
            )
        case ("Service", "ProtectClock") where yes:
            emulation.traceChecks.append(
                (
                    "ProtectClock",
                    { log in
                        let set = ["clock_settime", "settimeofday", "adjtimex", "clock_adjtime"].flatMap {
                            calls(log, $0)
                        }
                        return set.isEmpty ? nil : "sets the clock: \(set)"
                    }
                )
            )
        case ("Service", "ProtectHostname") where yes:
            emulation.mounts.insert(": ProtectHostname: unshare --uts below", at: 0)
            emulation.traceChecks.append(
                (
                    "ProtectHostname",
                    { log in
                        let set = calls(log, "sethostname") + calls(log, "setdomainname")
                        return set.isEmpty ? nil : "sets the host name: \(set)"
                    }
                )
            )
        case ("Service", "RestrictAddressFamilies"):
            let allowed = Set(value.split(separator: " ").map(String.init))
            emulation.traceChecks.append(
                (
                    "RestrictAddressFamilies",
                    { log in
                        var used = Set<String>()
                        for line in calls(log, "socket") + calls(log, "socketpair") {
                            guard let open = line.range(of: "socket(") ?? line.range(of: "socketpair(") else {
                                continue
                            }
                            let family = line[open.upperBound...].prefix { $0 != "," && $0 != ")" }
                            used.insert(String(family))
                        }
                        if used.isEmpty { return "strace saw no socket at all" }
                        let outside = used.subtracting(allowed)
                        return outside.isEmpty ? nil : "uses address families outside the list: \(outside.sorted())"
                    }
                )
            )
        case ("Service", "RestrictNamespaces") where yes:
            emulation.traceChecks.append(
                (
                    "RestrictNamespaces",
                    { log in
                        let created =
                            (calls(log, "unshare") + calls(log, "setns")
                                + (calls(log, "clone") + calls(log, "clone3")).filter { $0.contains("CLONE_NEW") })
                        return created.isEmpty ? nil : "enters or creates namespaces: \(created)"
                    }
                )
            )
        case ("Service", "RestrictRealtime") where yes:
            emulation.traceChecks.append(
                (
                    "RestrictRealtime",
                    { log in
                        let realtime = (calls(log, "sched_setscheduler") + calls(log, "sched_setattr"))
                            .filter {
                                $0.contains("SCHED_FIFO") || $0.contains("SCHED_RR") || $0.contains("SCHED_DEADLINE")
                            }
                        return realtime.isEmpty ? nil : "asks for real-time scheduling: \(realtime)"
                    }
                )
            )
        case ("Service", "RestrictSUIDSGID") where yes:
            emulation.traceChecks.append(
                (
                    "RestrictSUIDSGID",
                    { log in
                        let modes = calls(log, "chmod") + calls(log, "fchmod") + calls(log, "fchmodat")
                        let special = modes.filter { line in
                            // strace prints the mode, in octal, as the call's last argument: `fchmod(3, 0600) = 0`.
                            let arguments = line.split(separator: ")").first ?? ""
                            let text = arguments.split(separator: ",").last?.trimmingCharacters(in: .whitespaces) ?? ""
                            return (Int(text, radix: 8) ?? 0) & 0o6000 != 0
                        }
                        return special.isEmpty ? nil : "makes set-user-ID or set-group-ID files: \(special)"
                    }
                )
            )
        case ("Service", "LockPersonality") where yes:
            emulation.traceChecks.append(
                (
                    "LockPersonality",
                    { log in
                        let changed = calls(log, "personality").filter { !$0.contains("personality(0xffffffff)") }
                        return changed.isEmpty ? nil : "changes its personality: \(changed)"
                    }
                )
            )
        case ("Service", "SystemCallArchitectures") where value == "native":
            // udpd is built for the host and makes no call of another ABI (strace marks those as such).
            emulation.traceChecks.append(
                (
                    "SystemCallArchitectures",
                    { log in
                        let foreign = log.filter { $0.contains("[ Process PID=") && $0.contains("runs in") }
                        return foreign.isEmpty ? nil : "switches ABI: \(foreign)"
                    }
                )
            )
        default:
            emulation.unknown.append("\(directive.section) line \(directive.line): \(directive.key)=\(value)")
        }
    }

    /// Runs udpd under `emulation` with a configuration that uses everything the unit must allow, checks it works,
    /// stops it, and checks the strace log.
    private static func run(under emulation: UnitEmulation) throws {
        // Not in /tmp, which PrivateTmp hides, nor below /root or /home.
        var template = Array("\(BuiltProducts.directory.path)/unit-test-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        let directory = String(cString: created)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let runtime = "\(directory)/runtime"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: false)
        // Where PrivateDevices= finds the host's device nodes while it builds the private /dev.
        try FileManager.default.createDirectory(atPath: "\(directory)/olddev", withIntermediateDirectories: false)
        let mode = Int(emulation.runtimeDirectoryMode, radix: 8) ?? 0o755
        chmod(runtime, mode_t(mode))
        // The mount point of RuntimeDirectory=: created (and removed again) on the host only if missing.
        let runtimeMountPoint = "/run/\(emulation.runtimeDirectory)"
        var createdMountPoint = false
        if !FileManager.default.fileExists(atPath: runtimeMountPoint) {
            try FileManager.default.createDirectory(atPath: runtimeMountPoint, withIntermediateDirectories: false)
            createdMountPoint = true
        }
        defer { if createdMountPoint { rmdir(runtimeMountPoint) } }

        let lowPort = try Self.freeLowPort()
        let ports = try freePorts(2)
        let (execPort, metricsPort) = (ports[0], ports[1])
        let config = """
            user: daemon
            metrics: {listen: "127.0.0.1:\(metricsPort)"}
            services:
              echo:
                handler: echo
                udp: \(lowPort)
                tcp: \(lowPort)
                bind: per-address
              who:
                handler: exec
                udp: \(execPort)
                bind: [127.0.0.1]
                user: nobody
                command: [/bin/sh, -c, 'echo "uid=$(id -u) tmp=$(ls -A /tmp | wc -l)"']
            """
        let configPath = "\(directory)/services.yaml"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        chmod(configPath, 0o644)
        chmod(directory, 0o755)

        let notifyPath = "\(directory)/notify.sock"
        let notify = try UnixDatagramListener(path: notifyPath)
        chmod(notifyPath, 0o777)  // as systemd's /run/systemd/notify: udpd sends READY=1 after dropping to user:
        try FileManager.default.createDirectory(atPath: "\(directory)/trace", withIntermediateDirectories: false)
        let tracePath = "\(directory)/trace/strace.log"
        let udpdPath = BuiltProducts.path("udpd")
        let execStart =
            [udpdPath] + emulation.execStart.dropFirst().map { $0 == "/etc/udpd/services.yaml" ? configPath : $0 }
        // RuntimeDirectory= stays writable, and so does the strace log's directory (strace is no part of the unit).
        let script =
            (["set -e", "T=\"\(directory)\"", "RUNTIME=\(runtimeMountPoint)", "TRACE=\"$T/trace\""]
            + ["mount --bind \"\(runtime)\" \"$RUNTIME\"", "mount --bind \"$TRACE\" \"$TRACE\""]
            + emulation.mounts
            + [
                "exec strace -f -qq -o \"\(tracePath)\" -e trace=socket,socketpair,unshare,setns,clone,clone3,"
                    + "personality,sched_setscheduler,sched_setattr,chmod,fchmod,fchmodat,clock_settime,"
                    + "settimeofday,adjtimex,clock_adjtime,init_module,finit_module,delete_module,syslog,"
                    + "sethostname,setdomainname "
                    + "setpriv \(emulation.setpriv.joined(separator: " ")) -- "
                    + execStart.map { "'\($0)'" }.joined(separator: " ")
            ]).joined(separator: "\n")
        let logPath = "\(directory)/udpd.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool("unshare")!)
        // RuntimeDirectory= and the Protect* settings need a mount namespace; ProtectHostname= a UTS namespace.
        process.arguments = ["--mount", "--uts", "--propagation", "private", "/bin/sh", "-c", script]
        // LeakSanitizer cannot run under ptrace (strace): a udpd built with AddressSanitizer (the CI's sanitizer run)
        // would end with its fatal error instead of exit status 0. Ignored by an ordinary build.
        process.environment = [
            "NOTIFY_SOCKET": notifyPath, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ASAN_OPTIONS": "detect_leaks=0",
        ]
        if !emulation.descriptorStoreMax.isEmpty { process.environment?["FDSTORE"] = emulation.descriptorStoreMax }
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer {
            // Whatever runs on this test's files (strace, udpd, which strace may leave running) is killed; then
            // Process sees its child exit once the last holder of its descriptor is gone.
            killProcesses(mentioning: directory)
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        // FileDescriptorStoreMax=: every listening socket is stored, named, before READY=1.
        var stored: [String] = []
        var ready = notify.receive()
        while let message = ready, message.hasPrefix("FDSTORE=1") {
            stored.append(message)
            ready = notify.receive()
        }
        if !emulation.descriptorStoreMax.isEmpty {
            for name in ["udp-127.0.0.1-\(lowPort)", "tcp-127.0.0.1-\(lowPort)", "udp-127.0.0.1-\(execPort)"] {
                #expect(stored.contains { $0.hasSuffix("FDNAME=\(name)") }, "\(name) stored: \(stored)")
            }
        }
        // Type=notify-reload: READY=1 once serving.
        #expect(ready?.hasPrefix("READY=1") == true, "no READY=1: \(ready ?? "nothing") \(log())")
        guard ready != nil else { return }
        // strace stays the parent, so udpd's pid is the one its log lines carry: `udpd[PID]: ...`.
        let daemonPID = try #require(
            log().split(separator: "\n").lazy.compactMap { line -> Int32? in
                guard line.hasPrefix("udpd["), let end = line.firstIndex(of: "]") else { return nil }
                return Int32(line[line.index(line.startIndex, offsetBy: 5)..<end])
            }.first,
            "udpd's pid in its log: \(log())"
        )
        // Killed first: udpd holds the descriptor by which Process learns that its child exited.
        defer { kill(daemonPID, SIGKILL) }
        let socketPath = "\(runtime)/control.sock"
        let status = try ControlClient.send(ControlRequest(command: .status), to: socketPath, timeout: .seconds(5))
        #expect(status.status?.services.count == 2, "the control socket in RuntimeDirectory= answers")

        // A port below 1024, served after udpd dropped to user: daemon.
        let echo = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: lowPort)!)
        try echo.send("low port")
        #expect(echo.receiveText() == "low port", "\(log())")
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: lowPort)!)
        try tcp.send("tcp")
        #expect(tcp.receive(count: 3) == Array("tcp".utf8))
        let uid = try runCommand("/usr/bin/id", ["-u", "daemon"]).standardOutput.trimmingCharacters(in: .newlines)
        let statusFile = try String(contentsOfFile: "/proc/\(daemonPID)/status", encoding: .utf8)
        let uids = statusFile.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
        #expect(uids.split(separator: "\t").dropFirst().allSatisfy { $0 == uid }, "udpd runs as daemon: \(uids)")
        #expect(statusFile.contains("NoNewPrivs:\t1"), "NoNewPrivileges= holds for udpd")

        // An exec program as user: nobody, with a private (empty) /tmp.
        let who = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: execPort)!)
        try who.send("who")
        let answer = who.receiveText() ?? ""
        #expect(answer.hasPrefix("uid=65534 tmp=0"), "the program's answer: \(answer) \(log())")

        // Metrics.
        let scrape = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: metricsPort)!)
        try scrape.send("GET /metrics HTTP/1.0\r\n\r\n")
        let metrics = String(decoding: scrape.receive(count: 200), as: UTF8.self)
        #expect(metrics.contains("200 OK"), "the metrics endpoint answers: \(metrics)")

        // NotifyAccess=all serves upgrades; with user: they are refused, with the reason, and udpd serves on.
        if emulation.notifyAccess == "all" {
            let upgrade = try runCommand(BuiltProducts.path("udpctl"), ["-s", socketPath, "upgrade"])
            #expect(upgrade.status == 1 && upgrade.standardError.contains("user:"), "\(upgrade.standardError)")
            try echo.send("still")
            #expect(echo.receiveText() == "still")
        }

        // systemctl reload: SIGHUP, then RELOADING=1 with MONOTONIC_USEC= and READY=1.
        kill(daemonPID, SIGHUP)
        let reloading = notify.receive() ?? ""
        #expect(reloading.hasPrefix("RELOADING=1") && reloading.contains("MONOTONIC_USEC="), "\(reloading)")
        #expect(notify.receive()?.hasPrefix("READY=1") == true)

        // systemctl stop: SIGTERM, STOPPING=1, exit 0 (Restart=on-failure then leaves it stopped).
        kill(daemonPID, SIGTERM)
        #expect(notify.receive()?.hasPrefix("STOPPING=1") == true)
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        #expect(!process.isRunning)
        if !process.isRunning { #expect(process.terminationStatus == 0, "udpd exits 0 on SIGTERM: \(log())") }

        let trace = try String(contentsOfFile: tracePath, encoding: .utf8).split(separator: "\n").map(String.init)
        for (name, check) in emulation.traceChecks {
            if let complaint = check(trace) { Issue.record("\(name)=: \(complaint)") }
        }
    }

    @Test(
        "every line of examples/udpd.socket holds: udpd adopts its sockets, with workers, and serves both families",
        .enabled(if: python3Path != nil, "python3 stands in for systemd's socket activation")
    )
    func socketUnitIsExercised() throws {
        let unitPath = BuiltProducts.packageRoot.appendingPathComponent("examples/udpd.socket").path
        let port = try probeFreePort()
        var sockets: [(proto: String, address: String)] = []
        var v6only: Bool?
        var reusePort = false
        var name = ""
        var unknown: [String] = []
        var listenPort: String?
        for directive in try parseUnit(unitPath) {
            let value = directive.value
            switch (directive.section, directive.key) {
            case ("Unit", "Description"):
                if value.isEmpty { unknown.append("empty Description=") }
            case ("Unit", "Documentation"):
                for page in value.split(separator: " ") {
                    let file = page.dropFirst("man:".count).replacingOccurrences(of: "(", with: ".")
                        .replacingOccurrences(of: ")", with: "")
                    #expect(FileManager.default.fileExists(atPath: "\(BuiltProducts.packageRoot.path)/man/\(file)"))
                }
            case ("Socket", "ListenDatagram"), ("Socket", "ListenStream"):
                guard let colon = value.lastIndex(of: ":") else {
                    unknown.append("\(directive.key)=\(value)")
                    continue
                }
                // The unit's port (88) is replaced by a free one: tests never bind fixed ports.
                listenPort = listenPort ?? String(value[value.index(after: colon)...])
                #expect(String(value[value.index(after: colon)...]) == listenPort, "one port for all four sockets")
                let address = String(value[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                sockets.append((directive.key == "ListenDatagram" ? "udp" : "tcp", address))
            case ("Socket", "BindIPv6Only"):
                guard value == "ipv6-only" || value == "both" else {
                    unknown.append("BindIPv6Only=\(value)")
                    continue
                }
                v6only = value == "ipv6-only"
            case ("Socket", "ReusePort"):
                reusePort = value == "yes" || value == "true"
            case ("Socket", "FileDescriptorName"):
                name = value
            case ("Socket", "Service"):
                #expect(
                    FileManager.default.fileExists(
                        atPath: BuiltProducts.packageRoot.appendingPathComponent("examples/\(value)").path
                    ),
                    "Service= names a unit that is shipped"
                )
            case ("Install", "WantedBy") where value == "sockets.target":
                break
            default:
                unknown.append("\(directive.section) line \(directive.line): \(directive.key)=\(value)")
            }
        }
        #expect(unknown.isEmpty, "directives this test cannot exercise: \(unknown)")
        #expect(!sockets.isEmpty)

        // What systemd does: open each socket (SO_REUSEPORT, IPV6_V6ONLY as the unit says), put them at 3, 4, ...,
        // and set LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES.
        let specs = sockets.map { "(\"\($0.proto)\", \"\($0.address)\")" }.joined(separator: ", ")
        let script = """
            import os, socket, sys
            fds = []
            for proto, address in [\(specs)]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                s = socket.socket(family, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, \(reusePort ? 1 : 0))
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, \(v6only == false ? 0 : 1))
                s.bind((address, \(port)))
                if proto == "tcp":
                    s.listen(16)
                fds.append(os.dup(s.fileno()))
                s.close()
            \(activationHandOver(names: "\":\".join([\"\(name)\"] * len(high))"))
            """
        let launcherDirectory = try TemporaryDirectory()
        let launcherPath = try launcherDirectory.write("activate.py", script)
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: echo
                    udp: \(port)
                    tcp: \(port)
                    workers: 2
                """,
            launcher: [python3Path!, launcherPath]
        )
        try udpd.waitUntilReady()
        let log = udpd.log
        #expect(
            log.components(separatedBy: "adopted an inherited socket").count - 1 == sockets.count,
            "every socket of the unit is adopted: \(log)"
        )
        #expect(!log.contains("one worker serves it"), "ReusePort=yes lets workers join: \(log)")
        #expect(log.contains(name), "FileDescriptorName= names the sockets in the log")
        var addresses = ["127.0.0.1"]
        if hasIPv6Loopback { addresses.append("::1") }
        for address in addresses {
            let client = try ConnectedUDPClient(from: address, to: IPEndpoint(address: address, port: port)!)
            try client.send("via \(address)")
            #expect(client.receiveText() == "via \(address)", "UDP over \(address)")
            let stream = try TCPTestClient(to: IPEndpoint(address: address, port: port)!)
            try stream.send("tcp")
            #expect(stream.receive(count: 3) == Array("tcp".utf8), "TCP over \(address)")
        }
        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0)
    }

    /// A port below 1024 free for UDP and TCP on every address.
    private static func freeLowPort() throws -> UInt16 {
        for port in UInt16(600)..<UInt16(1000) {
            if isPortFree("0.0.0.0", port, proto: "udp") && isPortFree("0.0.0.0", port, proto: "tcp") { return port }
        }
        throw TestFailure("no free port below 1024")
    }
}
