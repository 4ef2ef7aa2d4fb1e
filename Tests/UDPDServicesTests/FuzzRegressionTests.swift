import Foundation
import Testing
import UDPDFuzzEntryPoints

/// Every input in `Fuzz/corpus/<target>/` and `Fuzz/regressions/<target>/` (crashes once found by `Fuzz/run.sh`,
/// then fixed) replayed through the same entry points the fuzzers drive; an entry point traps on failure, so a
/// regression fails the whole test run loudly.
@Suite("Fuzz inputs replay without a crash")
struct FuzzRegressionTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func inputs(_ target: String) throws -> [URL] {
        try ["corpus", "regressions"].flatMap { kind in
            let directory = fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target)
            return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
                .filter { !$0.lastPathComponent.hasPrefix(".") }
        }
    }

    @Test("every seed and regression input", arguments: FuzzEntryPoints.targets.keys.sorted())
    func replay(target: String) throws {
        let entryPoint = try #require(FuzzEntryPoints.targets[target])
        let files = try Self.inputs(target)
        #expect(!files.isEmpty, "no inputs for \(target)")
        for file in files {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { entryPoint($0) }
        }
    }
}
