import Foundation
import Testing
import UDPDTransport

/// This process's descriptor-table size (FDSize in /proc/self/status) and open descriptors.
private func descriptorTable() throws -> (size: Int, open: Int) {
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("FDSize:") })
    let size = try #require(Int(line.dropFirst("FDSize:".count).trimmingCharacters(in: .whitespaces)))
    return (size, try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count)
}

@Suite("descriptor table")
struct DescriptorTableTests {
    @Test("reserve grows the table in one step to make room, and leaves no descriptor open")
    func reserveGrowsTheTable() throws {
        let before = try descriptorTable()
        let wanted = before.size * 4
        DescriptorTable.reserve(wanted)
        let after = try descriptorTable()
        #expect(after.size >= wanted, "FDSize \(before.size) -> \(after.size), wanted \(wanted)")
        // Other tests run in parallel and open descriptors too, so counting them proves nothing. reserve's second
        // descriptor lands at or above `wanted` (four times the old table), where nothing else in this process
        // reaches: a leak would leave it there.
        let highest = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int($0) }.max()
        #expect((highest ?? 0) < wanted, "descriptor \(highest ?? 0) is open at or above \(wanted)")
    }

    // Raising the open-file limit is tested end to end (DescriptorLimitTests): lowering this process's limit to
    // test it here would starve the suites running beside it.
}
