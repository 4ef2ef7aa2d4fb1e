import Foundation
import Testing
import UDPDTestSupport

@Suite("udpd --check validates without binding")
struct CheckCommandTests {
    @Test("a valid file exits 0 and binds nothing")
    func validFile() throws {
        let directory = try TemporaryDirectory()
        let port = try probeFreePort()
        let path = try directory.write("ok.yaml", "services:\n  echo:\n    handler: echo\n    udp: \(port)\n")
        let result = try runCommand(BuiltProducts.path("udpd"), ["-c", path, "--check"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("valid"))
        #expect(isPortFree("0.0.0.0", port, proto: "udp"))
    }

    @Test("an invalid file exits 1 with every error as FILE:LINE:COLUMN: error: MESSAGE")
    func invalidFile() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(
            "bad.yaml",
            """
            services:
              echo:
                handler: echoo
                udp: 0
              other:
                handler: discard
                tcp: 9
                upsteam: 127.0.0.1:1
            """
        )
        let result = try runCommand(BuiltProducts.path("udpd"), ["-c", path, "--check"])
        #expect(result.status == 1)
        let lines = result.standardError.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(result.standardError)")
        #expect(lines.first?.hasPrefix("\(path):3:14: error: ") == true)
        #expect(lines.contains { $0.hasPrefix("\(path):4:10: error: ") })
        #expect(lines.contains { $0.hasPrefix("\(path):8:5: error: ") && $0.contains("upstream") })
    }

    @Test("a missing file exits 1 naming the file")
    func missingFile() throws {
        let result = try runCommand(BuiltProducts.path("udpd"), ["-c", "/nonexistent/udpd.yaml", "--check"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("/nonexistent/udpd.yaml"))
    }

    @Test("every file in examples/ passes --check")
    func examplesAreValid() throws {
        let examples = BuiltProducts.packageRoot.appendingPathComponent("examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files {
            let result = try runCommand(
                BuiltProducts.path("udpd"),
                ["-c", examples.appendingPathComponent(file).path, "--check"]
            )
            #expect(result.status == 0, "\(file): \(result.standardError)")
        }
    }
}
