import Testing

@testable import UDPDConfig

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `load(path:)`: reading real files.
@Suite struct ConfigurationFileTests {
    /// A fresh temporary directory, removed by the caller.
    private func temporaryDirectory() throws -> String {
        var template = Array("/tmp/udpd-config-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(made != nil)
        return String(cString: made!)
    }

    private func writeFile(_ bytes: [UInt8], to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        try #require(written == bytes.count)
    }

    private func loadErrors(_ path: String) -> [String] {
        do {
            _ = try ConfigurationLoader.load(path: path)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func goodFileLoads() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/services.yaml"
        defer { unlink(path) }
        try writeFile(Array(ConfigurationDecodingTests.interfaceExample.utf8), to: path)
        let configuration = try ConfigurationLoader.load(path: path)
        #expect(configuration.file == path)
        #expect(configuration.services.map(\.name) == ["echo", "kdc", "hello"])
    }

    @Test func errorsNameTheFileAsGiven() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/bad.yaml"
        defer { unlink(path) }
        try writeFile(Array("services:\n  e: {handler: echo, udp: 0}\n".utf8), to: path)
        #expect(loadErrors(path) == ["\(path):2:27: error: udp port 0 is out of range (1-65535)"])
    }

    @Test func missingFile() {
        #expect(
            loadErrors("/nonexistent/udpd.yaml")
                == ["/nonexistent/udpd.yaml: error: cannot open the file: No such file or directory"]
        )
    }

    @Test func directoryIsNotAConfigurationFile() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        #expect(loadErrors(directory) == ["\(directory): error: is a directory, not a configuration file"])
    }

    @Test(.enabled(if: geteuid() != 0, "root reads every file"))
    func unreadableFile() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/secret.yaml"
        defer { unlink(path) }
        try writeFile(Array("services: {}\n".utf8), to: path)
        chmod(path, 0)
        #expect(loadErrors(path) == ["\(path): error: cannot open the file: Permission denied"])
    }

    @Test func fifoIsNotARegularFile() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/fifo.yaml"
        defer { unlink(path) }
        try #require(mkfifo(path, 0o600) == 0)
        #expect(loadErrors(path) == ["\(path): error: is not a regular file"])
    }

    @Test func invalidUTF8IsReportedAtItsPosition() throws {
        let directory = try temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/latin1.yaml"
        defer { unlink(path) }
        try writeFile(Array("services:\n  caf".utf8) + [0xE9] + Array(": {handler: echo, udp: 7}\n".utf8), to: path)
        #expect(loadErrors(path) == ["\(path):2:6: error: the file is not valid UTF-8"])
    }
}
