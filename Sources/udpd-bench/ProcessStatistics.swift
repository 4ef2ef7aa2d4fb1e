import CUDPD

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel reports about a process in `/proc`: CPU time and resident memory.
enum ProcessStatistics {
    /// User plus system CPU seconds `pid` has used, summed over its threads (and, with `includeChildren`, over its
    /// child processes, as nginx's workers are children of its master); `nil` when the process is gone.
    static func cpuSeconds(pid: Int32, includeChildren: Bool) -> Double? {
        guard let own = cpuSeconds(ofProcess: pid) else { return nil }
        guard includeChildren else { return own }
        return children(of: pid).reduce(own) { sum, child in sum + (cpuSeconds(ofProcess: child) ?? 0) }
    }

    /// `utime + stime` from `/proc/PID/stat`, in seconds.
    private static func cpuSeconds(ofProcess pid: Int32) -> Double? {
        guard let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) may contain spaces; the fields after its closing parenthesis are fixed.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, so utime (field 14) and stime (field 15) are at offsets 11 and 12.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The process ids of `pid`'s children, from `/proc/PID/task/*/children`.
    static func children(of pid: Int32) -> [Int32] {
        guard let directory = opendir("/proc/\(pid)/task") else { return [] }
        defer { closedir(directory) }
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let tid = Int32(name),
                let text = readSmallFile("/proc/\(pid)/task/\(tid)/children")
            else { continue }
            result += text.split(separator: " ").compactMap { Int32($0.trimmingWhitespace) }
        }
        return result
    }

    /// The resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
    static func residentKiB(pid: Int32) -> Int? {
        guard let text = readSmallFile("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.dropFirst("VmRSS:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// The user plus system CPU seconds this process has used so far.
    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Reads a small text file (as `/proc` files are) with plain system calls.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The 64-bit counter that `Benchmarks/reference/malloc_count.so` keeps in the file at `path`.
    static func mallocCount(path: String) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var value: UInt64 = 0
        let count = pread(fd, &value, MemoryLayout<UInt64>.size, 0)
        return count == MemoryLayout<UInt64>.size ? value : nil
    }
}

extension Substring {
    /// The text without leading and trailing spaces, tabs and newlines.
    var trimmingWhitespace: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" || first == "\n" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\n" { text = text.dropLast() }
        return text
    }
}
