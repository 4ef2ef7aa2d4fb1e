import Foundation
import UDPDControl

/// A udpd started by the benchmark; stopped with SIGTERM (then SIGKILL) by ``stop()``, which `defer` calls.
final class DaemonUnderTest {
    private let process = Process()
    private let socket: String
    private let started: UInt64
    private let logPath: String

    /// Starts `udpd -c CONFIG --control-socket SOCKET`, logging to `log`.
    init(udpd: String, config: String, socket: String, log: String) throws {
        self.socket = socket
        logPath = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: udpd)
        process.arguments = ["-c", config, "--control-socket", socket]
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardInput = FileHandle.nullDevice
        started = monotonicNanoseconds()
        try process.run()
    }

    /// The process id.
    var pid: Int32 { process.processIdentifier }

    /// Polls the control socket until status answers with `expectingServices` services; returns the milliseconds
    /// since the process was started. Gives up after 60 seconds.
    func waitUntilReady(expectingServices: Int) throws -> Double {
        let deadline = started + 60_000_000_000
        while monotonicNanoseconds() < deadline {
            guard process.isRunning else {
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw BenchmarkError("udpd exited with \(process.terminationStatus) before it was ready: \(log)")
            }
            if let response = try? ControlClient.send(
                ControlRequest(command: .status),
                to: socket,
                timeout: .seconds(5)
            ),
                let status = response.status
            {
                guard status.services.count == expectingServices else {
                    throw BenchmarkError("udpd reports \(status.services.count) services, not \(expectingServices)")
                }
                return Double(monotonicNanoseconds() - started) / 1e6
            }
            usleep(500)
        }
        throw BenchmarkError("udpd did not answer on \(socket) within 60 s")
    }

    /// Stops udpd: SIGTERM, then SIGKILL after 15 seconds. Safe to call twice.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = monotonicNanoseconds() + 15_000_000_000
        while process.isRunning && monotonicNanoseconds() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
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
