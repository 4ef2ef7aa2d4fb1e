import ArgumentParser
import Foundation
import UDPDControl
import UDPDTransport

/// `udpd-bench control`: how fast udpd loads, reloads and reports a large configuration, and how much memory it
/// keeps when idle.
struct ControlBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Time loading, reloading and status of a many-service configuration; measure idle RSS.",
        discussion: """
            Generates a configuration of --services UDP echo services on free ports of 127.0.0.1 and measures: \
            `udpd --check` on it; the time from spawning udpd until its first status answer has arrived (every \
            listener is bound and served by then; start_to_ready_ms), and until it sent READY=1 to NOTIFY_SOCKET \
            (start_to_notify_ms); a reload that moves one service to another port (wall time of the control \
            request, which answers once the new listener serves and the old port is closed); status latency; \
            and VmRSS with that configuration and with a single service. Prints one JSON object.
            """
    )

    @Option(help: "The udpd binary.")
    var udpd: String

    @Option(help: "Services in the generated configuration.")
    var services = 1000

    @Option(help: "Status requests timed.")
    var statusRequests = 20

    @Option(help: "Reloads timed (each moves one service to another port and back).")
    var reloads = 5

    func validate() throws {
        guard services >= 2, services <= 5000 else { throw ValidationError("--services must be 2...5000") }
        guard statusRequests >= 1, statusRequests <= 1000, reloads >= 1, reloads <= 100 else {
            throw ValidationError("--status-requests must be 1...1000 and --reloads 1...100")
        }
    }

    func run() throws {
        let directory = try BenchDirectory()
        let ports = try freeUDPPorts(count: services + 1)
        let spare = ports[services]
        let changed = services / 2
        let socket = directory.file("control.sock")
        let configPath = directory.file("services.yaml")
        try writeConfiguration(configPath, socket: socket, ports: Array(ports[0..<services]))

        var report = ControlReport(services: services)
        report.checkMilliseconds = try median((0..<3).map { _ in try timeCheck(configPath) })

        let daemon = try DaemonUnderTest(
            udpd: udpd,
            config: configPath,
            socket: socket,
            log: directory.file("udpd.log"),
            notify: directory.file("notify.sock")
        )
        defer { daemon.stop() }
        let ready = try daemon.waitUntilReady(expectingServices: services)
        report.startToReadyMilliseconds = ready.answered
        report.startToNotifyMilliseconds = ready.notified

        // "Status answers in at most 5 ms" is the daemon's side: from the request written to the last byte of the
        // answer read. A client then decodes 400 KB of JSON, which is timed apart (udpctl's JSONDecoder).
        var statusTimes: [Double] = []
        var decodeTimes: [Double] = []
        for _ in 0..<statusRequests {
            let (milliseconds, line) = try timed {
                try rawControlRequest(
                    #"{"version":1,"command":"status"}"#,
                    socket: socket
                )
            }
            let (decodeMilliseconds, response) = try timed { try ControlProtocol.decodeResponse(line) }
            guard response.status?.services.count == services else { throw BenchmarkError("status: \(response)") }
            statusTimes.append(milliseconds)
            decodeTimes.append(decodeMilliseconds)
        }
        report.statusMedianMilliseconds = median(statusTimes)
        report.statusMaxMilliseconds = statusTimes.max()
        report.statusDecodeMedianMilliseconds = median(decodeTimes)

        var reloadTimes: [Double] = []
        for index in 0..<reloads {
            var moved = Array(ports[0..<services])
            if index % 2 == 0 { moved[changed] = spare }
            try writeConfiguration(configPath, socket: socket, ports: moved)
            let (milliseconds, response) = try timed {
                try ControlClient.send(
                    ControlRequest(command: .reload),
                    to: socket,
                    timeout: .seconds(30)
                )
            }
            guard response.ok else { throw BenchmarkError("reload was refused: \(response)") }
            reloadTimes.append(milliseconds)
        }
        report.reloadOneChangeMedianMilliseconds = median(reloadTimes)
        report.reloadOneChangeMaxMilliseconds = reloadTimes.max()

        usleep(300_000)
        report.residentKiBWithAllServices = ProcessStatistics.residentKiB(pid: daemon.pid)
        report.threadsWithAllServices = threadCount(pid: daemon.pid)
        daemon.stop()

        let smallConfig = directory.file("one.yaml")
        let smallSocket = directory.file("one.sock")
        try writeConfiguration(smallConfig, socket: smallSocket, ports: [ports[0]])
        let idle = try DaemonUnderTest(
            udpd: udpd,
            config: smallConfig,
            socket: smallSocket,
            log: directory.file("one.log"),
            notify: directory.file("one-notify.sock")
        )
        defer { idle.stop() }
        _ = try idle.waitUntilReady(expectingServices: 1)
        usleep(500_000)
        report.idleResidentKiB = ProcessStatistics.residentKiB(pid: idle.pid)
        print(try report.jsonLine())
    }

    /// Writes a configuration with one UDP echo service per port, each bound to 127.0.0.1.
    private func writeConfiguration(_ path: String, socket: String, ports: [UInt16]) throws {
        var text = "control:\n  socket: \(socket)\nlog:\n  level: warning\nservices:\n"
        for (index, port) in ports.enumerated() {
            text += "  svc-\(index):\n    handler: echo\n    udp: \(port)\n    bind: [127.0.0.1]\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Wall milliseconds of `udpd -c FILE --check` (process start included), spawned with posix_spawn like
    /// ``DaemonUnderTest`` (Foundation's `Process` added about 30 ms of its own).
    private func timeCheck(_ config: String) throws -> Double {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let arguments: [String] = [udpd, "-c", config, "--check"]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var status: CInt = 0
        let (milliseconds, spawned) = timed { () -> CInt in
            var child: pid_t = 0
            let result = posix_spawn(&child, udpd, &actions, nil, argv, environ)
            if result == 0 { _ = waitpid(child, &status, 0) }
            return result
        }
        guard spawned == 0, status == 0 else { throw BenchmarkError("udpd --check refused the generated file") }
        return milliseconds
    }
}

/// Ports free for UDP on 127.0.0.1, all held at once while choosing so that none is chosen twice.
func freeUDPPorts(count: Int) throws -> [UInt16] {
    var held: [UDPListenerSocket] = []
    defer { held.forEach { $0.close() } }
    for _ in 0..<count {
        held.append(try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!))
    }
    return held.map(\.localEndpoint.port)
}

/// Runs `body` and returns its wall time in milliseconds with its result.
func timed<Result>(_ body: () throws -> Result) rethrows -> (Double, Result) {
    let start = monotonicNanoseconds()
    let result = try body()
    return (Double(monotonicNanoseconds() - start) / 1e6, result)
}

/// The middle value (the mean of the two middle values for an even count); 0 for none.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// `Threads:` of `/proc/PID/status`.
func threadCount(pid: Int32) -> Int? {
    guard let text = ProcessStatistics.readSmallFile("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
        return Int(line.dropFirst("Threads:".count).trimmingWhitespace)
    }
    return nil
}

/// Sends one control request line and reads the answer line, without decoding it.
func rawControlRequest(_ request: String, socket path: String) throws -> [UInt8] {
    let fd = try systemCall("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw BenchmarkError("path too long") }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
    _ = try withUnsafePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            try systemCall("connect", context: path) {
                connect(fd, socketAddress, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
    let bytes = Array((request + "\n").utf8)
    var written = 0
    while written < bytes.count {
        written += try systemCall("write") {
            bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
        }
    }
    var answer: [UInt8] = []
    answer.reserveCapacity(1 << 20)
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while answer.last != UInt8(ascii: "\n") {
        let count = try systemCall("read") { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
        guard count > 0 else { throw BenchmarkError("the daemon closed the control connection") }
        answer += chunk[0..<count]
    }
    return Array(answer.dropLast())
}
