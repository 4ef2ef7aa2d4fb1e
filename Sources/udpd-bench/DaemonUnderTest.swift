import Foundation
import UDPDControl

/// A udpd started by the benchmark; stopped with SIGTERM (then SIGKILL) by ``stop()``, which `defer` calls.
///
/// Started with posix_spawn rather than Foundation's `Process`, whose own set-up took about 30 ms before the
/// child existed (udpd-bench's `check_ms` of ~50 ms against ~15 ms for the same `udpd --check` spawned from a
/// shell): that was the benchmark's time, not udpd's. The clock starts just before posix_spawn.
final class DaemonUnderTest {
    private let socket: String
    private let started: UInt64
    private let logPath: String
    private let notifyDescriptor: CInt
    private var exited = false
    /// The process id.
    let pid: pid_t

    /// Starts `udpd -c CONFIG --control-socket SOCKET`, logging to `log`, with NOTIFY_SOCKET set to `notify` (a
    /// datagram socket the benchmark binds) so that the READY=1 moment can be timed as well.
    init(udpd: String, config: String, socket: String, log: String, notify: String) throws {
        self.socket = socket
        logPath = log
        notifyDescriptor = try bindNotifySocket(notify)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify
        let arguments = [udpd, "-c", config, "--control-socket", socket]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        started = monotonicNanoseconds()
        let result = posix_spawn(&child, udpd, &actions, nil, argv, envp)
        guard result == 0 else {
            close(notifyDescriptor)
            throw BenchmarkError("cannot start \(udpd): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    /// Polls the control socket until status answers with `expectingServices` services; returns the milliseconds
    /// from spawn until the answer had arrived (every listener is bound and served before udpd opens its control
    /// socket), and from spawn until udpd sent READY=1. The answer is decoded and checked after the clock stops:
    /// decoding 400 KB of JSON is the client's work, timed on its own as `status_decode_ms`. Gives up after 60 s.
    func waitUntilReady(expectingServices: Int) throws -> (answered: Double, notified: Double?) {
        let deadline = started + 60_000_000_000
        var notified: Double?
        while monotonicNanoseconds() < deadline {
            if notified == nil, receivedReady() { notified = Double(monotonicNanoseconds() - started) / 1e6 }
            guard isRunning else {
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw BenchmarkError("udpd exited before it was ready: \(log)")
            }
            if let answer = try? rawControlRequest(#"{"version":1,"command":"status"}"#, socket: socket) {
                let answered = Double(monotonicNanoseconds() - started) / 1e6
                let status = try ControlProtocol.decodeResponse(answer).status
                guard let status, status.services.count == expectingServices else {
                    let count = status?.services.count ?? 0
                    throw BenchmarkError("udpd reports \(count) services, not \(expectingServices)")
                }
                if notified == nil, receivedReady() { notified = answered }
                return (answered, notified)
            }
            usleep(500)
        }
        throw BenchmarkError("udpd did not answer on \(socket) within 60 s")
    }

    /// Whether a READY=1 notification has arrived (non-blocking).
    private func receivedReady() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes {
                recv(notifyDescriptor, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT))
            }
            guard count > 0 else { return false }
            if String(decoding: buffer[0..<count], as: UTF8.self).contains("READY=1") { return true }
        }
    }

    /// Whether udpd still runs (reaps it when it has exited).
    private var isRunning: Bool {
        guard !exited else { return false }
        var status: CInt = 0
        if waitpid(pid, &status, WNOHANG) == pid { exited = true }
        return !exited
    }

    /// Stops udpd: SIGTERM, then SIGKILL after 15 seconds. Safe to call twice.
    func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = monotonicNanoseconds() + 15_000_000_000
        while isRunning && monotonicNanoseconds() < deadline { usleep(1_000) }
        if isRunning {
            kill(pid, SIGKILL)
            var status: CInt = 0
            _ = waitpid(pid, &status, 0)
            exited = true
        }
    }

    deinit {
        stop()
        close(notifyDescriptor)
    }
}

/// A datagram socket bound at `path`, for sd_notify messages.
private func bindNotifySocket(_ path: String) throws -> CInt {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw BenchmarkError("cannot create the notify socket") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        close(fd)
        throw BenchmarkError("notify socket path too long")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard bound == 0 else {
        close(fd)
        throw BenchmarkError("cannot bind the notify socket at \(path)")
    }
    return fd
}

/// A temporary directory with a short path (control socket paths are limited to about 100 bytes); removed on deinit.
final class BenchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/udpd-bench-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw BenchmarkError("mkdtemp failed") }
        path = String(cString: created)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// What `udpd-bench control` measured, printed as one JSON object.
struct ControlReport: Codable {
    var label = "control"
    var services: Int
    var checkMilliseconds: Double?
    var startToReadyMilliseconds: Double?
    var startToNotifyMilliseconds: Double?
    var reloadOneChangeMedianMilliseconds: Double?
    var reloadOneChangeMaxMilliseconds: Double?
    var statusMedianMilliseconds: Double?
    var statusMaxMilliseconds: Double?
    var statusDecodeMedianMilliseconds: Double?
    var residentKiBWithAllServices: Int?
    var threadsWithAllServices: Int?
    var idleResidentKiB: Int?

    init(services: Int) { self.services = services }

    enum CodingKeys: String, CodingKey {
        case label, services
        case checkMilliseconds = "check_ms"
        case startToReadyMilliseconds = "start_to_ready_ms"
        case startToNotifyMilliseconds = "start_to_notify_ms"
        case reloadOneChangeMedianMilliseconds = "reload_one_change_ms"
        case reloadOneChangeMaxMilliseconds = "reload_one_change_max_ms"
        case statusMedianMilliseconds = "status_ms"
        case statusMaxMilliseconds = "status_max_ms"
        case statusDecodeMedianMilliseconds = "status_decode_ms"
        case residentKiBWithAllServices = "rss_kib_all_services"
        case threadsWithAllServices = "threads_all_services"
        case idleResidentKiB = "idle_rss_kib"
    }

    func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
