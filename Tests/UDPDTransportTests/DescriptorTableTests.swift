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
        // Other tests run in parallel and open descriptors too, so compare with some slack: reserve opens two and
        // closes both, and a leak would keep them.
        #expect(after.open <= before.open + 16)
    }

    // Raising the open-file limit is tested end to end (DescriptorLimitTests): lowering this process's limit to
    // test it here would starve the suites running beside it.
}
