import Foundation

/// One load measurement, as `udpd-bench load` prints it (one JSON object per line) and `report` reads it.
struct LoadReport: Codable {
    var label: String
    var round: Int
    var target: String
    var threads: Int
    var sockets: Int
    var window: Int
    var payload: Int
    var durationSeconds: Double
    var requestsPerSecond: Double
    var sent: UInt64
    var completed: UInt64
    var lost: UInt64
    var lossRatio: Double
    var wrongSource: UInt64
    var late: UInt64
    var malformed: UInt64
    var sendErrors: UInt64
    var p50Microseconds: Double
    var p99Microseconds: Double
    var p999Microseconds: Double
    var maxMicroseconds: Double
    var serverCPUSeconds: Double?
    var serverCPUSecondsPerMillion: Double?
    var clientCPUSecondsPerMillion: Double?
    var allocations: UInt64?
    var allocationsPerRequest: Double?

    init(
        label: String,
        round: Int,
        target: String,
        threads: Int,
        sockets: Int,
        window: Int,
        payload: Int,
        durationSeconds: Double,
        tally: LoadTally
    ) {
        self.label = label
        self.round = round
        self.target = target
        self.threads = threads
        self.sockets = sockets
        self.window = window
        self.payload = payload
        self.durationSeconds = durationSeconds
        requestsPerSecond = Double(tally.completed) / durationSeconds
        sent = tally.sent
        completed = tally.completed
        lost = tally.lost
        lossRatio = tally.completed + tally.lost > 0 ? Double(tally.lost) / Double(tally.completed + tally.lost) : 0
        wrongSource = tally.wrongSource
        late = tally.late
        malformed = tally.malformed
        sendErrors = tally.sendErrors
        p50Microseconds = tally.latency.percentile(0.5)
        p99Microseconds = tally.latency.percentile(0.99)
        p999Microseconds = tally.latency.percentile(0.999)
        maxMicroseconds = Double(tally.latency.maximum)
    }

    enum CodingKeys: String, CodingKey {
        case label, round, target, threads, sockets, window, payload
        case durationSeconds = "duration_s"
        case requestsPerSecond = "requests_per_s"
        case sent, completed, lost
        case lossRatio = "loss_ratio"
        case wrongSource = "wrong_source"
        case late, malformed
        case sendErrors = "send_errors"
        case p50Microseconds = "p50_us"
        case p99Microseconds = "p99_us"
        case p999Microseconds = "p999_us"
        case maxMicroseconds = "max_us"
        case serverCPUSeconds = "server_cpu_s"
        case serverCPUSecondsPerMillion = "server_cpu_s_per_1m"
        case clientCPUSecondsPerMillion = "client_cpu_s_per_1m"
        case allocations
        case allocationsPerRequest = "allocations_per_request"
    }

    /// One line of compact JSON with sorted keys.
    func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
